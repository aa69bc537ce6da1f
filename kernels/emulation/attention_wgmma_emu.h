// Host stand-ins for kernels/attention_wgmma.cuh (sm_90a warpgroup MMA), on fakecuda.h's fibers. Include
// after attention_ptx_emu.h and before the kernel source: it defines KILN_WGMMA_EMULATED, so the header
// keeps only its descriptor encoding (wgmma_desc, shared with the device code) and these stand in for
// the PTX. References are to the PTX ISA, section 9.7.15 (wgmma), as the device header's comments.
//
//   Shared-memory addresses (attention_ptx_emu.h smem_addr): offsets into the running block's dynamic
//     shared memory (< 2^18, like a real shared window address), so a descriptor's 14-bit start address
//     field addresses it the way the hardware's does. Static __shared__ cannot be a wgmma operand here.
//   Descriptors (9.7.15.5.1.2): start address, LBO and SBO decoded from their bit fields; only the
//     no-swizzle mode (bits 62–63 = 0) with base offset 0 (bits 49–51) is emulated, anything else aborts.
//     Operand elements are read through the canonical layouts (9.7.15.5.1.2.1.3):
//       K-major  (A; B with imm-trans-b 0): (r%8)·16 + (r/8)·SBO + (k%8)·2 + (k/8)·LBO bytes
//       MN-major (B with imm-trans-b 1):    (n%8)·2 + (n/8)·SBO + (k%8)·16 + (k/8)·LBO bytes
//     and each read is checked to lie inside the launch's dynamic shared memory.
//   Fragments (9.7.15.5.1.1): D of m64nNk16 .f32: warp w of the warpgroup holds rows 16w…16w+15, lane l
//     (g = l/4, t = l%4) d[i] = (row 16w + g + 8·((i/2)%2), column 8·(i/4) + 2t + i%2). A from registers
//     (.f16/.bf16): the warp's 16 rows in mma.m16n8k16's A layout (a[0] = (g, 2t..), a[1] = (g+8, 2t..),
//     a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..), low half = lower k).
//   Asynchrony (9.7.15.6, 9.7.15.7): wgmma.mma_async only queues the operation; wgmma.commit_group closes
//     a group; wgmma.wait_group N performs the oldest groups until at most N are pending — the operands
//     (shared memory and A registers) are read then, the latest the ISA allows. At issue, accumulator
//     registers not already owned by a pending operation are saved and set to NaN; the pending operations
//     accumulate into the saved copy, written back when the last of them completes. So reading an
//     accumulator before its wait sees NaN, and writing one (e.g. rescaling O) before it is lost.
//   Each product sums its 16 exact products in double and adds the fp32 accumulator (hardware: fp32 in an
//     unspecified order), as attention_ptx_emu.h's mma.sync. scale-d 0: D = A·B.
//   Checks (abort with a message): an mma_async without a wgmma.fence since this thread's last
//     wait_group (9.7.15.7.1: the fence must order earlier register accesses before the MMA); descriptors,
//     shape or scale-d of a thread's n-th mma_async that differ from its warpgroup's (.sync.aligned: all
//     128 threads execute the same instruction);
//     shared memory written by cp.async that some thread has not yet made visible to the async proxy with
//     fence.proxy.async (9.7.15.3 "async proxy") when an mma_async is issued (not checked under
//     KILN_EMU_CP_ASYNC_SYNC, whose copies land at issue); operations still pending or uncommitted when
//     the next block starts.
#pragma once
#define KILN_WGMMA_EMULATED
#include "../attention_wgmma.cuh"

#include <deque>
#include <map>
#include <vector>

namespace attn_emu {
struct WgOp {
  float* d;                  // the thread's accumulator array (n / 2 floats)
  int n;                     // N of m64nNk16
  bool a_regs;               // A from registers (else from shared memory by desc_a)
  const unsigned* a;         // the thread's A registers (read at completion)
  unsigned long long desc_a, desc_b;
  bool tnsp_b;               // B MN-major
  bool scale_d;
};
struct WgThread {
  std::vector<WgOp> open;                // issued since the last commit
  std::deque<std::vector<WgOp>> groups;  // committed, pending
  bool fenced = false;                   // a wgmma.fence since the last wait_group
  bool unfenced_copies = false;          // cp.async copies landed since this thread's last fence.proxy.async
  std::map<float*, std::pair<std::vector<float>, int>> acc;  // accumulator → (saved values, pending ops)
  size_t issued = 0;                     // mma_async issued in this block
};
inline WgThread g_wg[1024];
// An mbarrier: arrivals still pending in the current phase, the count a phase needs, the current phase's
// parity.
struct Mbar { unsigned pending, count, phase; bool init; };
inline std::map<unsigned long long*, Mbar> g_mbar;
// A named barrier: a round completes when `threads` threads have arrived (bar.sync or bar.arrive); the
// syncing ones wait for their round. Every use of an id must name the same count.
struct NamedBar {
  unsigned threads = 0, arrived = 0, round = 0;
  void arrive(bool wait) {
    kiln_emu::g_progress++;
    const unsigned r = round;
    if (++arrived == threads) { arrived = 0; round++; return; }
    if (wait) while (round == r) kiln_emu::yield();
  }
};
inline NamedBar g_named[16];
inline NamedBar& named_bar(int id, int threads) {
  if (id < 1 || id > 15 || threads % 32 != 0 || threads <= 0 || (g_named[id].threads != 0 && g_named[id].threads != (unsigned)threads)) {
    fprintf(stderr, "named barrier %d: %d threads (earlier uses: %u)\n", id, threads, g_named[id].threads);
    abort();
  }
  g_named[id].threads = threads;
  return g_named[id];
}
// Per warpgroup of the block, the descriptors, shape and scale-d of its n-th mma_async, as the first of
// its threads issued it: every thread's n-th must match (.sync.aligned, 9.7.15.5.2).
struct WgIssue { unsigned long long a, b; int n; bool a_regs, tnsp_b, scale_d; };
inline std::vector<WgIssue> g_wg_issues[8];
inline const bool g_wg_hook = [] {
  kiln_emu::block_start_hooks().push_back([] {
    for (auto& t : g_wg) {
      if (!t.open.empty() || !t.groups.empty()) {
        fprintf(stderr, "wgmma: operations still pending when the block ended\n");
        abort();
      }
      t = WgThread{};
    }
    for (auto& v : g_wg_issues) v.clear();
    g_mbar.clear();
    for (auto& b : g_named) b = NamedBar{};
  });
  g_copy_landed_hook = [](unsigned tid) { g_wg[tid].unfenced_copies = true; };
  return true;
}();

struct Desc { unsigned start, lbo, sbo; };
inline Desc decode(unsigned long long d) {
  if ((d >> 62) != 0 || ((d >> 49) & 7) != 0) {
    fprintf(stderr, "wgmma: descriptor %llx: only no-swizzle, base offset 0 is emulated\n", d);
    abort();
  }
  return {(unsigned)(d & 0x3FFF) << 4, (unsigned)((d >> 16) & 0x3FFF) << 4, (unsigned)((d >> 32) & 0x3FFF) << 4};
}
inline float smem_elem(unsigned byte) {
  if (byte + 2 > kiln_emu::g_dyn_smem_bytes) {
    fprintf(stderr, "wgmma: operand byte %u outside the launch's %zu B of dynamic shared memory\n", byte,
            kiln_emu::g_dyn_smem_bytes);
    abort();
  }
  uint16_t b;
  std::memcpy(&b, kiln_emu::g_dyn_smem_cur + byte, 2);
  return half_to_float(b);
}
// Element (r, k) of a K-major operand, (k, n) of an MN-major one, at its canonical-layout byte address.
inline float k_major(const Desc& x, int r, int k) {
  return smem_elem(x.start + (r % 8) * 16 + (r / 8) * x.sbo + (k % 8) * 2 + (k / 8) * x.lbo);
}
inline float mn_major(const Desc& x, int k, int n) {
  return smem_elem(x.start + (n % 8) * 2 + (n / 8) * x.sbo + (k % 8) * 16 + (k / 8) * x.lbo);
}

// Performs op for the calling thread (all 32 lanes of its warp call this together, in the same order).
inline void wg_execute(const WgOp& op) {
  WgThread& me = g_wg[threadIdx.x];
  unsigned regs[4] = {0, 0, 0, 0};
  if (op.a_regs) std::memcpy(regs, op.a, sizeof(regs));
  struct A4 { unsigned r[4]; };
  A4 mine, all[32];
  std::memcpy(mine.r, regs, sizeof(regs));
  kiln_emu::warp_allgather(mine, all);  // every lane's A fragment (register A only reads the warp's own)
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3, w = (threadIdx.x >> 5) & 3;
  const Desc da = op.a_regs ? Desc{} : decode(op.desc_a), db = decode(op.desc_b);
  auto A = [&](int row, int k) {  // row of the warpgroup's 64
    if (!op.a_regs) return k_major(da, row, k);
    const int rw = row - 16 * w;  // only the warp's own rows are read
    const unsigned reg = all[(rw & 7) * 4 + (k & 7) / 2].r[(rw >= 8) + 2 * (k >= 8)];
    return half_to_float(k & 1 ? hi16(reg) : lo16(reg));
  };
  auto B = [&](int k, int n) { return op.tnsp_b ? mn_major(db, k, n) : k_major(db, n, k); };
  auto& slot = me.acc.at(op.d);
  std::vector<float>& d = slot.first;
  for (int i = 0; i < op.n / 2; i++) {
    const int row = 16 * w + g + 8 * ((i / 2) % 2), col = 8 * (i / 4) + 2 * t + i % 2;
    double s = 0;
    for (int k = 0; k < 16; k++) s += (double)A(row, k) * (double)B(k, col);
    d[i] = (float)((op.scale_d ? (double)d[i] : 0.0) + s);
  }
  if (--slot.second == 0) {
    std::memcpy(op.d, d.data(), sizeof(float) * d.size());
    me.acc.erase(op.d);
  }
}

inline void wg_issue(const WgOp& op) {
  WgThread& me = g_wg[threadIdx.x];
  if (!me.fenced) {
    fprintf(stderr, "wgmma.mma_async without a wgmma.fence since the last wgmma.wait_group (thread %u)\n", threadIdx.x);
    abort();
  }
#if !defined(KILN_EMU_CP_ASYNC_SYNC)
  for (unsigned i = 0; i < blockDim.x; i++) {
    if (g_wg[i].unfenced_copies) {
      fprintf(stderr, "wgmma.mma_async: thread %u's cp.async writes not fenced by fence.proxy.async\n", i);
      abort();
    }
  }
#endif
  const WgIssue mine{op.a_regs ? 0ull : op.desc_a, op.desc_b, op.n, op.a_regs, op.tnsp_b, op.scale_d};
  std::vector<WgIssue>& seen = g_wg_issues[threadIdx.x / 128];
  const size_t k = me.issued++;
  if (k == seen.size()) seen.push_back(mine);
  const WgIssue& first = seen[k];
  if (first.a != mine.a || first.b != mine.b || first.n != mine.n || first.a_regs != mine.a_regs ||
      first.tnsp_b != mine.tnsp_b || first.scale_d != mine.scale_d) {
    fprintf(stderr, "wgmma.mma_async #%zu: thread %u's descriptors, shape or scale-d differ from its warpgroup's\n", k,
            threadIdx.x);
    abort();
  }
  auto it = me.acc.find(op.d);
  if (it == me.acc.end()) {
    it = me.acc.emplace(op.d, std::make_pair(std::vector<float>(op.d, op.d + op.n / 2), 0)).first;
    for (int i = 0; i < op.n / 2; i++) op.d[i] = __builtin_nanf("");
  }
  it->second.second++;
  me.open.push_back(op);
}
}  // namespace attn_emu

namespace attn {

inline void wgmma_fence() { attn_emu::g_wg[threadIdx.x].fenced = true; }
inline void wgmma_commit() {
  auto& me = attn_emu::g_wg[threadIdx.x];
  me.groups.push_back(std::move(me.open));
  me.open.clear();
}
template <int N> inline void wgmma_wait() {
  auto& me = attn_emu::g_wg[threadIdx.x];
  while (me.groups.size() > (size_t)N) {
    const std::vector<attn_emu::WgOp> ops = std::move(me.groups.front());
    me.groups.pop_front();
    for (const auto& op : ops) attn_emu::wg_execute(op);
  }
  me.fenced = false;
}
inline void fence_proxy_async() { attn_emu::g_wg[threadIdx.x].unfenced_copies = false; }

// mbarriers and named barriers (attention_wgmma.cuh), on the fibers: a waiter yields until the phase (or
// the barrier's round) it waits for completes. State lives beside the block (keyed by the barrier's
// address), reset at every block start; an mbarrier used before its init, or arrived at more often than a
// phase allows before anyone could see it (the count already 0), aborts.
inline void mbar_init(unsigned long long* bar, unsigned count) {
  attn_emu::g_mbar[bar] = attn_emu::Mbar{count, count, 0, true};
}
inline void mbar_init_fence() {}
inline attn_emu::Mbar& mbar_of(unsigned long long* bar) {
  auto it = attn_emu::g_mbar.find(bar);
  if (it == attn_emu::g_mbar.end() || !it->second.init) {
    fprintf(stderr, "mbarrier %p used before mbarrier.init (thread %u)\n", (void*)bar, threadIdx.x);
    abort();
  }
  return it->second;
}
inline void mbar_arrive(unsigned long long* bar) {
  attn_emu::Mbar& m = mbar_of(bar);
  kiln_emu::g_progress++;
  if (--m.pending == 0) {
    m.pending = m.count;
    m.phase ^= 1u;
  }
}
inline void mbar_wait(unsigned long long* bar, unsigned parity) {
  while (mbar_of(bar).phase == (parity & 1u)) kiln_emu::yield();
}
inline void named_bar_sync(int id, int threads) { attn_emu::named_bar(id, threads).arrive(true); }
inline void named_bar_arrive(int id, int threads) { attn_emu::named_bar(id, threads).arrive(false); }
template <int N> inline void setmaxnreg_dec() { static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg"); }
template <int N> inline void setmaxnreg_inc() { static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg"); }
template <int N> inline void fence_operand(float (&)[N]) {}

inline void wgmma_ss_n64(float (&d)[32], unsigned long long da, unsigned long long db, int scale_d) {
  attn_emu::wg_issue({d, 64, false, nullptr, da, db, false, scale_d != 0});
}
inline void wgmma_ss_n128(float (&d)[64], unsigned long long da, unsigned long long db, int scale_d) {
  attn_emu::wg_issue({d, 128, false, nullptr, da, db, false, scale_d != 0});
}
inline void wgmma_rs_n64_tb(float (&d)[32], const unsigned (&a)[4], unsigned long long db, int scale_d) {
  attn_emu::wg_issue({d, 64, true, a, 0, db, true, scale_d != 0});
}
inline void wgmma_rs_n128_tb(float (&d)[64], const unsigned (&a)[4], unsigned long long db, int scale_d) {
  attn_emu::wg_issue({d, 128, true, a, 0, db, true, scale_d != 0});
}

}  // namespace attn
