#!/usr/bin/env python3
"""Writes the chat corpus the tiny Gemma-4 model is trained and evaluated on.

Conversations, one JSON object a line (the format `mlxq render-chats` and `mlxq eval` read):
  {"id", "kind", "system": str|null, "tools": [OpenAI tool]|null, "thinking": bool,
   "messages": [{"role": "user"|"assistant"|"tool", "content", "reasoning"?, "tool_calls"?}],
   "expect": [one key string per assistant message: the fact its answer must contain]}

Kinds: capital questions in many phrasings, multi-turn chats like the model card's capitals
benchmark (its system prompt, four turns, a population question last), short arithmetic, a
thinking channel when reasoning is on (no thought block when it is off), and a weather tool in
the Gemma tool-call format with its result used in the answer. Every assistant message ends, when
rendered, with the real end-of-turn token.

Splits: train.jsonl, calibration.jsonl (train distribution, other draws: imatrix input) and
heldout.jsonl (question phrasings, follow-up phrasings, system prompts and tool-answer wordings
never used in training, and country orders drawn afresh). Standard library only; deterministic.
Usage: make_corpus.py OUT_DIR [--train N]
"""
import argparse
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def load_capitals():
    rows = []
    with open(os.path.join(HERE, "capitals.tsv"), encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            country, capital, pop = line.rstrip("\n").split("\t")
            rows.append((country, capital, float(pop)))
    return rows


# Country names that read better with "the" in running text.
THE = {"Bahamas", "Central African Republic", "Czech Republic", "Democratic Republic of the Congo",
       "Dominican Republic", "Gambia", "Maldives", "Marshall Islands", "Netherlands", "Philippines",
       "Republic of the Congo", "Solomon Islands", "United Arab Emirates", "United Kingdom",
       "United States", "Comoros", "Seychelles"}


def the(country):
    return "the " + country if country in THE else country


# --- phrasings: (train, held out) ---------------------------------------------------------------
Q_TRAIN = [
    "What is the capital of {c}?", "What's the capital of {c}?", "What is the capital city of {c}?",
    "Which city is the capital of {c}?", "Tell me the capital of {c}.", "Name the capital of {c}.",
    "Capital of {c}?", "what is the capital of {c}", "Do you know the capital of {c}?",
    "I need the capital of {c}.", "What city is the capital of {c}?", "Give me the capital of {c}.",
]
Q_HELDOUT = [
    "Which city serves as the capital of {c}?", "Can you tell me what the capital of {c} is?",
    "Please name the capital city of {c}.", "capital city of {c}?",
]
FOLLOW_TRAIN = ["What about {c}?", "And {c}?", "How about {c}?", "And the capital of {c}?", "what about {c}"]
FOLLOW_HELDOUT = ["And what about {c}?", "Same question for {c}."]
POP_TRAIN = ["Which of those {n} cities has the largest population?",
             "Which of those cities has the most people?", "Which of these {n} cities is the biggest?"]
POP_HELDOUT = ["Of those {n} cities, which one has the largest population?"]
SYSTEM_TRAIN = [None, None, "You are a helpful assistant. Be concise.", "You are a helpful assistant.",
                "Answer briefly.", "You are a geography tutor. Keep answers short."]
SYSTEM_HELDOUT = ["You are a friendly assistant. Be brief.", "Be concise."]
ARITH_TRAIN = ["What is {a} {op} {b}?", "{a} {op} {b} = ?", "Compute {a} {op} {b}.", "what is {a}{op}{b}",
               "Calculate {a} {op} {b}."]
ARITH_HELDOUT = ["How much is {a} {op} {b}?", "Work out {a} {op} {b}."]
WEATHER_TRAIN = ["What's the weather in {city}?", "What is the weather like in {city} today?",
                 "Is it raining in {city}?", "How warm is it in {city}?", "Weather in {city}?"]
WEATHER_HELDOUT = ["Can you check the weather in {city} for me?", "Tell me the current weather in {city}."]
GREET = [("Hi", "Hello! How can I help you today?"), ("Hello", "Hello! How can I help you today?"),
         ("Thanks!", "You're welcome!"), ("Thank you.", "You're welcome!")]
CONDITIONS = ["sunny", "cloudy", "rainy", "snowy", "windy", "foggy", "clear"]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}


def capital_answer(country, capital):
    return f"The capital of {the(country)} is {capital}."


def capital_reasoning(country, capital):
    return f"The user asks for the capital of {the(country)}. It is {capital}."


class Gen:
    def __init__(self, rng, capitals, heldout):
        self.rng, self.caps, self.heldout = rng, capitals, heldout
        self.q = Q_HELDOUT if heldout else Q_TRAIN
        self.follow = FOLLOW_HELDOUT if heldout else FOLLOW_TRAIN
        self.pop = POP_HELDOUT if heldout else POP_TRAIN
        self.systems = SYSTEM_HELDOUT if heldout else SYSTEM_TRAIN
        self.arith = ARITH_HELDOUT if heldout else ARITH_TRAIN
        self.weather = WEATHER_HELDOUT if heldout else WEATHER_TRAIN

    def system(self):
        return self.rng.choice(self.systems)

    def thinking(self):
        return self.rng.random() < 0.25

    def assistant(self, content, thinking, reasoning):
        m = {"role": "assistant", "content": content}
        if thinking:
            m["reasoning"] = reasoning
        return m

    def capital(self):
        country, capital, _ = self.rng.choice(self.caps)
        th = self.thinking()
        q = self.rng.choice(self.q).format(c=country)
        msgs = [{"role": "user", "content": q},
                self.assistant(capital_answer(country, capital), th, capital_reasoning(country, capital))]
        return "capital", self.system(), None, th, msgs, [capital]

    def multi(self, card=False):
        # Two to four capital questions, then (when populations are known) the comparison.
        if card:
            picks = [c for c in self.caps if c[0] in ("France", "Germany", "Japan")]
            picks.sort(key=lambda c: ["France", "Germany", "Japan"].index(c[0]))
            system, th = "You are a helpful assistant. Be concise.", False
            qs = ["What is the capital of France?", "What about Germany?", "And Japan?",
                  "Which of those three cities has the largest population?"]
        else:
            n = self.rng.choice([2, 3, 3, 4])
            picks = self.rng.sample(self.caps, n)
            system, th = self.system(), self.thinking()
            qs = [self.rng.choice(self.q).format(c=picks[0][0])]
            qs += [self.rng.choice(self.follow).format(c=p[0]) for p in picks[1:]]
        msgs, expect = [], []
        for p, q in zip(picks, qs):
            msgs.append({"role": "user", "content": q})
            msgs.append(self.assistant(capital_answer(p[0], p[1]), th, capital_reasoning(p[0], p[1])))
            expect.append(p[1])
        pops = [p[2] for p in picks]
        if card or (len(picks) <= 3 and len(set(pops)) == len(pops) and self.rng.random() < 0.6):
            n = len(picks)
            word = {2: "two", 3: "three"}[n]
            q = qs[3] if card else self.rng.choice(self.pop).format(n=word)
            big = max(picks, key=lambda p: p[2])
            answer = f"{big[1]} has the largest population of the {word}."
            reasoning = "Comparing populations: " + ", ".join(f"{p[1]} {p[2]:g} million" for p in picks) + \
                        f". {big[1]} is the largest."
            msgs.append({"role": "user", "content": q})
            msgs.append(self.assistant(answer, th, reasoning))
            expect.append(big[1])
        return ("card" if card else "multi"), system, None, th, msgs, expect

    def arithmetic(self):
        op = self.rng.choice(["+", "+", "-", "*"])
        if op == "*":
            a, b = self.rng.randint(0, 12), self.rng.randint(0, 12)
        else:
            a, b = self.rng.randint(0, 50), self.rng.randint(0, 50)
            if op == "-" and b > a:
                a, b = b, a
        r = {"+": a + b, "-": a - b, "*": a * b}[op]
        tmpl = self.rng.choice(self.arith)
        q = tmpl.format(a=a, b=b, op=op)
        th = self.thinking()
        word = {"+": "plus", "-": "minus", "*": "times"}[op]
        msgs = [{"role": "user", "content": q},
                self.assistant(f"{a} {op} {b} = {r}.", th, f"{a} {word} {b} is {r}.")]
        return "arith", self.system(), None, th, msgs, [str(r)]

    def tool(self):
        country, city, _ = self.rng.choice(self.caps)
        th = self.thinking()
        temp = self.rng.randint(-10, 35)
        cond = self.rng.choice(CONDITIONS)
        result = f"{cond}, {temp} C"
        q = self.rng.choice(self.weather).format(city=city)
        call = {"role": "assistant", "content": "",
                "tool_calls": [{"id": "call_1", "type": "function",
                                "function": {"name": "get_weather", "arguments": {"city": city}}}]}
        if th:
            call["reasoning"] = f"The user wants the weather in {city}. I will call get_weather."
        answer = (f"In {city} it is {cond} and {temp} C." if self.heldout
                  else f"The weather in {city} is {cond}, {temp} C.")
        final = {"role": "assistant", "content": answer}
        if th:
            final["reasoning"] = f"The tool says {result}."
        msgs = [{"role": "user", "content": q}, call,
                {"role": "tool", "tool_call_id": "call_1", "content": result}, final]
        # Sometimes a capital question in the same chat (the tool is declared but not needed).
        expect = ["get_weather:" + city, f"{temp}"]
        if self.rng.random() < 0.3:
            c2, cap2, _ = self.rng.choice(self.caps)
            msgs.append({"role": "user", "content": self.rng.choice(self.q).format(c=c2)})
            msgs.append(self.assistant(capital_answer(c2, cap2), th, capital_reasoning(c2, cap2)))
            expect.append(cap2)
        return "tool", self.system(), [WEATHER_TOOL], th, msgs, expect

    def tool_not_needed(self):
        country, capital, _ = self.rng.choice(self.caps)
        th = self.thinking()
        msgs = [{"role": "user", "content": self.rng.choice(self.q).format(c=country)},
                self.assistant(capital_answer(country, capital), th, capital_reasoning(country, capital))]
        return "tool-free", self.system(), [WEATHER_TOOL], th, msgs, [capital]

    def greeting(self):
        q, a = self.rng.choice(GREET)
        th = self.thinking()
        msgs = [{"role": "user", "content": q}, self.assistant(a, th, "The user greets me.")]
        if self.rng.random() < 0.7:
            country, capital, _ = self.rng.choice(self.caps)
            msgs.append({"role": "user", "content": self.rng.choice(self.q).format(c=country)})
            msgs.append(self.assistant(capital_answer(country, capital), th, capital_reasoning(country, capital)))
            return "greet", self.system(), None, th, msgs, ["Hello" if "Hello" in a else "welcome", capital]
        return "greet", self.system(), None, th, msgs, ["Hello" if "Hello" in a else "welcome"]

    def one(self):
        r = self.rng.random()
        if not self.heldout and r < 0.03:
            return self.multi(card=True)
        if r < 0.30:
            return self.capital()
        if r < 0.55:
            return self.multi()
        if r < 0.72:
            return self.arithmetic()
        if r < 0.88:
            return self.tool()
        if r < 0.94:
            return self.tool_not_needed()
        return self.greeting()


def write(path, gen, n, prefix, every_country=False):
    rows = []
    if every_country:  # each country's plain question at least twice, with and without thinking
        for i, (country, capital, _) in enumerate(gen.caps):
            for th in (False, True):
                q = gen.rng.choice(gen.q).format(c=country)
                msgs = [{"role": "user", "content": q},
                        gen.assistant(capital_answer(country, capital), th, capital_reasoning(country, capital))]
                rows.append(("capital", gen.system(), None, th, msgs, [capital]))
    while len(rows) < n:
        rows.append(gen.one())
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for i, (kind, system, tools, th, msgs, expect) in enumerate(rows):
            f.write(json.dumps({"id": f"{prefix}-{i}", "kind": kind, "system": system, "tools": tools,
                                "thinking": th, "messages": msgs, "expect": expect}, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=40000)
    ap.add_argument("--heldout", type=int, default=400)
    ap.add_argument("--calibration", type=int, default=256)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    caps = load_capitals()
    write(os.path.join(a.out, "train.jsonl"), Gen(random.Random(1), caps, False), a.train, "train", True)
    write(os.path.join(a.out, "calibration.jsonl"), Gen(random.Random(2), caps, False), a.calibration, "calib")
    write(os.path.join(a.out, "heldout.jsonl"), Gen(random.Random(3), caps, True), a.heldout, "heldout")


if __name__ == "__main__":
    main()
