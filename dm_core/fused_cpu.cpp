// The two passes of the scheme losses over the (N, C) logits, fused into one loop per row.
//
// dm_core/losses.py (_row_parts, _assemble) holds the same two steps as tensor ops, and the
// math is documented there. On small CPU batches the fixed cost of each tensor op (about
// 3 us, a dozen ops per pass) outweighs the arithmetic; here each pass is one call.
// Built on first use by dm_core/fused_cpu.py (torch.utils.cpp_extension); the tests check
// both implementations against each other and against float64 references.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <limits>

namespace {

using at::vec::Vectorized;

// Rows per parallel task: about 16k logits each, so a CIFAR batch runs on one thread.
int64_t grain(int64_t c) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(c, 1)); }

// max over x[0, len), NaN-propagating like torch.amax; -inf when empty.
template <typename T>
T row_max(const T* x, int64_t len) {
  using V = Vectorized<T>;
  V acc(-std::numeric_limits<T>::infinity()), acc2 = acc;  // two chains: max has latency 4
  int64_t j = 0;
  for (; j + 2 * V::size() <= len; j += 2 * V::size()) {
    acc = at::vec::maximum(acc, V::loadu(x + j));
    acc2 = at::vec::maximum(acc2, V::loadu(x + j + V::size()));
  }
  for (; j + V::size() <= len; j += V::size()) acc = at::vec::maximum(acc, V::loadu(x + j));
  acc = at::vec::maximum(acc, acc2);
  T m = at::vec::vec_reduce_all<T>([](V& a, V& b) { return at::vec::maximum(a, b); }, acc);
  for (; j < len; ++j) {
    if (std::isnan(m)) break;
    if (std::isnan(x[j]) || x[j] > m) m = x[j];
  }
  return m;
}

template <typename T>
void row_parts_kernel(const T* z, const int64_t* t, int64_t n, int64_t c, T* e, T* s, T* d,
                      T* log_p, T* log_1mp, T* p) {
  using V = Vectorized<T>;
  at::parallel_for(0, n, grain(c), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T* zi = z + i * c;
      T* ei = e + i * c;
      const int64_t y = t[i];
      // As _row_parts: shift by the max of the logits other than the label's, exp, sum;
      // one pass for the max, one for exp and sum (the label's lane zeroed before it counts).
      const T m_a = row_max(zi, y), m_b = row_max(zi + y + 1, c - y - 1);
      const T m = (std::isnan(m_a) || m_a > m_b) ? m_a : m_b;
      const V vm(m);
      const int64_t label_chunk = y - y % V::size();
      V acc(T(0));
      int64_t j = 0;
      for (; j + V::size() <= c; j += V::size()) {
        V v = (V::loadu(zi + j) - vm).exp_u20();
        v.store(ei + j);
        if (j == label_chunk) {
          ei[y] = T(0);
          v = V::loadu(ei + j);
        }
        acc = acc + v;
      }
      T si = at::vec::vec_reduce_all<T>([](V& a, V& b) { return a + b; }, acc);
      for (; j < c; ++j) {
        const T v = j == y ? T(0) : std::exp(zi[j] - m);
        ei[j] = v;
        si += v;
      }
      s[i] = si;
      d[i] = m;             // until the pass below: the shift ...
      log_1mp[i] = zi[y];   // ... and the label's logit
    }
    // Per row, vectorised over rows: d = (log s + m) - z_y; log p = log sigmoid(-d) and
    // log(1 - p) = log sigmoid(d), as torch's log_sigmoid: min(x, 0) - log1p(exp(-|x|)).
    const auto finish = [](V sv, V mv, V zyv, V& dv, V& lpv, V& l1v) {
      dv = (sv.log() + mv) - zyv;
      const V tail = dv.abs().neg().exp().log1p();
      lpv = at::vec::minimum(dv.neg(), V(T(0))) - tail;
      l1v = at::vec::minimum(dv, V(T(0))) - tail;
    };
    int64_t i = lo;
    for (; i + V::size() <= hi; i += V::size()) {
      V dv, lpv, l1v;
      finish(V::loadu(s + i), V::loadu(d + i), V::loadu(log_1mp + i), dv, lpv, l1v);
      dv.store(d + i);
      lpv.store(log_p + i);
      l1v.store(log_1mp + i);
      lpv.exp().store(p + i);
    }
    if (i < hi) {
      const int64_t rest = hi - i;
      V dv, lpv, l1v;
      finish(V::loadu(s + i, rest), V::loadu(d + i, rest), V::loadu(log_1mp + i, rest), dv, lpv, l1v);
      dv.store(d + i, rest);
      lpv.store(log_p + i, rest);
      l1v.store(log_1mp + i, rest);
      lpv.exp().store(p + i, rest);
    }
  });
}

// As _scheme_coefficients: c_i = softmax over the batch of log w (or exp(log w) / N, capped at
// the largest finite value), NaN -> 0, times the margin cap sigmoid(log(1 - p) - log(eps/2)).
template <typename T>
void coefficients(const T* log_w, const T* log_1mp, int64_t n, bool normalise, double eps, T* coef) {
  if (normalise) {
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t i = 0; i < n; ++i) mx = (std::isnan(mx) || log_w[i] <= mx) ? mx : log_w[i];
    for (int64_t i = 0; i < n; ++i) if (std::isnan(log_w[i])) mx = log_w[i];
    T total = 0;
    for (int64_t i = 0; i < n; ++i) total += (coef[i] = std::exp(log_w[i] - mx));
    for (int64_t i = 0; i < n; ++i) coef[i] /= total;
  } else {
    const T log_n = std::log(static_cast<T>(n)), big = std::numeric_limits<T>::max();
    for (int64_t i = 0; i < n; ++i) {
      const T w = std::exp(log_w[i] - log_n);
      coef[i] = w > big ? big : w;
    }
  }
  const T log_half_eps = eps > 0 ? static_cast<T>(std::log(eps / 2.0)) : T(0);
  for (int64_t i = 0; i < n; ++i) {
    T ci = std::isnan(coef[i]) ? T(0) : coef[i];
    if (eps > 0) ci *= T(1) / (T(1) + std::exp(-(log_1mp[i] - log_half_eps)));
    coef[i] = ci;
  }
}

template <typename T>
T assemble_kernel(T* e, const int64_t* t, int64_t n, int64_t c, const T* s, const T* d,
                  const T* coef) {
  using V = Vectorized<T>;
  at::parallel_for(0, n, grain(c), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T half = coef[i] * T(0.5);
      const T r = half / s[i];
      T* ei = e + i * c;
      int64_t j = 0;
      for (; j + V::size() <= c; j += V::size()) (V::loadu(ei + j) * V(r)).store(ei + j);
      for (; j < c; ++j) ei[j] *= r;
      ei[t[i]] = -half;
    }
  });
  T loss = 0;
  for (int64_t i = 0; i < n; ++i) loss += coef[i] * T(0.5) * d[i];
  return loss;
}

void check(const at::Tensor& z, const at::Tensor& t) {
  TORCH_CHECK(z.device().is_cpu() && t.device().is_cpu(), "fused_cpu: CPU tensors only");
  TORCH_CHECK(z.dim() == 2 && t.dim() == 1 && t.size(0) == z.size(0), "fused_cpu: bad shapes");
  TORCH_CHECK(t.scalar_type() == at::kLong, "fused_cpu: targets must be int64");
  const int64_t c = z.size(1);
  const int64_t* tp = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < t.size(0); ++i)
    TORCH_CHECK(tp[i] >= 0 && tp[i] < c, "index ", tp[i], " is out of bounds for dimension 1 with size ", c);
}

}  // namespace

// (e, rows): e = exp(z - max_{j != y} z) with 0 at the label; rows (5, N) holds per row its
// sum s, d = logsumexp_{j != y} z - z_y, log p, log(1 - p) and p (one tensor, not five: each
// returned tensor costs about a microsecond).
std::vector<at::Tensor> row_parts(const at::Tensor& logits, const at::Tensor& targets) {
  auto z = logits.contiguous();
  auto t = targets.contiguous();
  check(z, t);
  const int64_t n = z.size(0), c = z.size(1);
  auto e = at::empty_like(z);
  auto rows = at::empty({5, n}, z.options());
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "row_parts", [&] {
    scalar_t* r = rows.data_ptr<scalar_t>();
    row_parts_kernel<scalar_t>(z.data_ptr<scalar_t>(), t.data_ptr<int64_t>(), n, c,
                               e.data_ptr<scalar_t>(), r, r + n, r + 2 * n, r + 3 * n, r + 4 * n);
  });
  return {e, rows};
}

// The coefficients c (N,) from log w, then, in place, e becomes the logit gradient
// c_i/2 (q_i - e_y); returns (surrogate loss, c).
std::vector<at::Tensor> assemble(at::Tensor e, const at::Tensor& targets, const at::Tensor& rows,
                                 const at::Tensor& log_w, bool normalise, double eps) {
  TORCH_CHECK(e.is_contiguous() && rows.is_contiguous() && rows.size(0) == 5 && rows.size(1) == e.size(0),
              "fused_cpu: e and rows as row_parts returns them");
  auto t = targets.contiguous();
  auto lw = log_w.to(e.scalar_type()).contiguous();
  TORCH_CHECK(lw.numel() == e.size(0), "fused_cpu: one log w per row");
  check(e, t);
  const int64_t n = e.size(0);
  auto coef = at::empty({n}, e.options());
  at::Tensor loss;
  AT_DISPATCH_FLOATING_TYPES(e.scalar_type(), "assemble", [&] {
    const scalar_t* r = rows.data_ptr<scalar_t>();
    coefficients<scalar_t>(lw.data_ptr<scalar_t>(), r + 3 * n, n, normalise, eps, coef.data_ptr<scalar_t>());
    const scalar_t value = assemble_kernel<scalar_t>(e.data_ptr<scalar_t>(), t.data_ptr<int64_t>(), n,
                                                     e.size(1), r, r + n, coef.data_ptr<scalar_t>());
    loss = at::scalar_tensor(value, e.options());
  });
  return {loss, coef};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("row_parts", &row_parts, "exp(z - max others), and per row s, d, log p, log(1 - p), p");
  m.def("assemble", &assemble, "the coefficients, the designed gradient in place, the surrogate loss");
}
