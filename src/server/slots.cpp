// SlotPool: longest-prefix slot choice and the bounded wait queue (slots.h).
#include "server/slots.h"

#include <algorithm>

namespace mlxq::server {

SlotPool::SlotPool(std::shared_ptr<Model> model, const SlotOptions& options) : opt_(options) {
  for (int i = 0; i < std::max(1, opt_.slots); ++i) {
    SessionOptions so;
    so.max_context = opt_.ctx_size;
    so.kv_rollback = opt_.kv_rollback;
    Slot s;
    s.session = model->create_session(so);
    slots_.push_back(std::move(s));
  }
}

SlotPool::Lease::~Lease() { pool_.release(index_); }
Session& SlotPool::Lease::session() { return *pool_.slots_[size_t(index_)].session; }

std::unique_ptr<SlotPool::Lease> SlotPool::acquire(const std::vector<int32_t>& prompt, Refusal* why) {
  std::unique_lock lock(mu_);
  auto free_slots = [&] {
    return int(std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.busy; }));
  };
  if (int(waiting_.size()) >= opt_.queue + free_slots()) {
    ++rejected_;
    *why = Refusal::QueueFull;
    return nullptr;
  }
  const uint64_t ticket = next_ticket_++;
  waiting_.push_back(ticket);
  // A waiter may go once fewer waiters stand before it than there are free slots.
  auto my_turn = [&] {
    const auto at = std::find(waiting_.begin(), waiting_.end(), ticket) - waiting_.begin();
    return at < free_slots();
  };
  if (!freed_.wait_for(lock, opt_.max_wait, my_turn)) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), ticket));
    ++rejected_;
    *why = Refusal::TimedOut;
    freed_.notify_all();
    return nullptr;
  }
  waiting_.erase(std::find(waiting_.begin(), waiting_.end(), ticket));
  int best = -1;
  size_t best_shared = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    if (s.busy) continue;
    const std::vector<int32_t>& h = s.session->history();
    const size_t n = std::min(h.size(), prompt.size());
    const size_t shared = size_t(std::mismatch(h.begin(), h.begin() + std::ptrdiff_t(n), prompt.begin()).first - h.begin());
    if (best < 0 || shared > best_shared ||
        (shared == best_shared && s.last_used < slots_[size_t(best)].last_used)) {
      best = int(i);
      best_shared = shared;
    }
  }
  slots_[size_t(best)].busy = true;
  slots_[size_t(best)].last_used = ++clock_;
  *why = Refusal::None;
  return std::unique_ptr<Lease>(new Lease(*this, best, int(best_shared)));
}

void SlotPool::release(int index) {
  {
    std::lock_guard g(mu_);
    slots_[size_t(index)].busy = false;
  }
  freed_.notify_all();
}

SlotPool::Stats SlotPool::stats() const {
  std::lock_guard g(mu_);
  Stats s;
  s.slots = int(slots_.size());
  s.busy = int(std::count_if(slots_.begin(), slots_.end(), [](const Slot& x) { return x.busy; }));
  s.queued = int(waiting_.size());
  s.rejected = rejected_;
  return s;
}

}  // namespace mlxq::server
