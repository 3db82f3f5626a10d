// c10d entry points: TCPStore, the Gloo and NCCL process groups and their collectives, and
// SyncBatchNorm (ctorch_distributed.h). Only this file sees c10d's, gloo's and NCCL's headers. It
// compiles the Gloo group where Package.swift found gloo's headers for this LibTorch
// (CTORCH_HAS_C10D_GLOO), the NCCL group where it found a CUDA LibTorch with NCCL's and the CUDA
// runtime's headers (CTORCH_HAS_C10D_NCCL); a call to a backend this build lacks says so.
#include "ct_internal.h"
#include "ctorch_distributed.h"

#include <chrono>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#if defined(CTORCH_HAS_C10D_GLOO) || defined(CTORCH_HAS_C10D_NCCL)
#define CTORCH_HAS_C10D 1
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/var_mean.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>
#endif

#if defined(CTORCH_HAS_C10D_GLOO)
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#if defined(CTORCH_HAS_C10D_NCCL)
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

#if defined(CTORCH_HAS_C10D)

struct Store {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

// The class both backends derive from: c10d::Backend since LibTorch 2.0, c10d::ProcessGroup before.
#if CTORCH_LIBTORCH_MAJOR >= 2
using CollectiveBackend = c10d::Backend;
#else
using CollectiveBackend = c10d::ProcessGroup;
#endif

struct Group {
  c10::intrusive_ptr<CollectiveBackend> group;
  std::chrono::milliseconds timeout;
};

Store &S(ct_store s) { return *static_cast<Store *>(s.ptr); }
Group &G(ct_process_group g) { return *static_cast<Group *>(g.ptr); }

std::chrono::milliseconds checked_timeout(int64_t ms) {
  if (ms <= 0) throw std::invalid_argument("the timeout must be positive, got " + std::to_string(ms) + " ms");
  return std::chrono::milliseconds(ms);
}

/// Waits for `work` at most the group's timeout; a failure or a timeout rethrows with the operation named.
void wait(const Group &g, const c10::intrusive_ptr<c10d::Work> &work, const char *what) {
  try {
    work->wait(g.timeout);
  } catch (const std::exception &e) {
    throw std::runtime_error(std::string(what) + " failed on rank " + std::to_string(g.group->getRank()) +
                             ": " + e.what());
  }
}

void check_rank(int32_t rank, int32_t world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    throw std::invalid_argument("rank " + std::to_string(rank) + " is outside a world of size " +
                                std::to_string(world_size));
  }
}

std::vector<at::Tensor> tensors_of(const ct_tensor *tensors, int32_t count) {
  if (count <= 0 || tensors == nullptr) throw std::invalid_argument("no tensors given to a collective");
  std::vector<at::Tensor> list;
  list.reserve(static_cast<size_t>(count));
  for (int32_t i = 0; i < count; ++i) list.push_back(ctorch::T(tensors[i]));
  for (const auto &t : list) {
    if (t.scalar_type() != list[0].scalar_type() || t.device() != list[0].device()) {
      throw std::invalid_argument("the tensors of one collective must share dtype and device");
    }
  }
  return list;
}

/// Runs `op` on one tensor holding all of `list`: in place when it is a single contiguous tensor,
/// else on a flat copy whose results are copied back.
template <typename Op>
void on_flat(std::vector<at::Tensor> &list, Op op) {
  if (list.size() == 1 && list[0].is_contiguous()) {
    std::vector<at::Tensor> one{list[0]};
    op(one);
    return;
  }
  std::vector<at::Tensor> flats;
  flats.reserve(list.size());
  for (const auto &t : list) flats.push_back(t.reshape({-1}));
  std::vector<at::Tensor> flat{at::cat(flats)};
  op(flat);
  int64_t offset = 0;
  for (auto &t : list) {
    const int64_t n = t.numel();
    t.copy_(flat[0].narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
}

#if defined(CTORCH_HAS_C10D_GLOO)
std::shared_ptr<::gloo::transport::Device> device_for_environment() {
  const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname != nullptr && *ifname != '\0') {
    const std::string names(ifname);
    const auto comma = names.find(',');
    // Several interfaces: torch.distributed makes one device each; one is enough for our single group.
    return c10d::ProcessGroupGloo::createDeviceForInterface(names.substr(0, comma));
  }
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif

/// Every rank's `input` stacked in rank order ([world, ...]): the same tensor on every rank.
at::Tensor allgather_stacked(const Group &g, const at::Tensor &input, const char *what) {
  const at::Tensor in = input.contiguous();
  std::vector<at::Tensor> inputs{in};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int i = 0; i < g.group->getSize(); ++i) outputs[0].push_back(at::empty_like(in));
  c10d::AllgatherOptions options;
  options.timeout = g.timeout;
  wait(g, g.group->allgather(outputs, inputs, options), what);
  return at::stack(outputs[0]);
}

/// The dimensions batch normalisation reduces over (all but the channels, dimension 1).
std::vector<int64_t> reduced_dims(const at::Tensor &x) {
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d != 1) dims.push_back(d);
  }
  return dims;
}

/// [C] viewed so it broadcasts against x's channels ([1, C, 1, ...]).
at::Tensor per_channel(const at::Tensor &v, const at::Tensor &x) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[1] = v.size(0);
  return v.view(shape);
}

/// The normalisation of SyncBatchNorm with the global statistics given as constants: forward is
/// `(x - mean) * invstd * weight + bias`; backward is batch norm's full input gradient, whose terms
/// through the statistics need every rank's `sum(dy)` and `sum(dy * (x - mean))`, gathered here in
/// rank order (so every rank adds them in the same order). weight and bias gradients stay this
/// rank's own, as in PyTorch, for the data-parallel gradient average to combine.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext *ctx, const at::Tensor &x, const at::Tensor &weight,
                            const at::Tensor &bias, const at::Tensor &mean, const at::Tensor &invstd, double count,
                            int64_t group_address) {
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["count"] = count;
    ctx->saved_data["group"] = group_address;
    ctx->saved_data["input_needs_grad"] = x.requires_grad();
    at::Tensor y = (x - per_channel(mean, x)) * per_channel(invstd, x);
    if (weight.defined()) y = y * per_channel(weight, x);
    if (bias.defined()) y = y + per_channel(bias, x);
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3];
    const at::Tensor dy = grad_outputs[0].contiguous();
    const double count = ctx->saved_data["count"].toDouble();
    const auto &g = *reinterpret_cast<const Group *>(static_cast<intptr_t>(ctx->saved_data["group"].toInt()));
    const auto dims = reduced_dims(x);
    const at::Tensor xmu = x - per_channel(mean, x);
    const at::Tensor sum_dy = dy.sum(dims);
    const at::Tensor sum_dy_xmu = (dy * xmu).sum(dims);
    at::Tensor grad_x, grad_weight, grad_bias;
    if (weight.defined()) grad_weight = sum_dy_xmu * invstd;
    if (weight.defined()) grad_bias = sum_dy;
    if (ctx->saved_data["input_needs_grad"].toBool()) {
      const int64_t c = sum_dy.size(0);
      const at::Tensor total = allgather_stacked(g, at::cat({sum_dy, sum_dy_xmu}), "SyncBatchNorm backward").sum(0);
      const at::Tensor mean_dy = total.narrow(0, 0, c) / count;
      const at::Tensor mean_dy_xmu = total.narrow(0, c, c) / count;
      const at::Tensor scale = weight.defined() ? invstd * weight : invstd;
      grad_x = (dy - per_channel(mean_dy, x) - xmu * per_channel(invstd * invstd * mean_dy_xmu, x)) *
               per_channel(scale, x);
    }
    return {grad_x, grad_weight, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

#endif

[[noreturn]] void unavailable() {
  throw std::runtime_error(
      "distributed training is not available in this LibTorch build: it needs c10d with Gloo and gloo's "
      "headers (<gloo/...>), which this build was compiled without (see docs/libtorch.md)");
}

[[noreturn]] void nccl_unavailable() {
  throw std::runtime_error(
      "NCCL process groups are not available in this build: they need a CUDA LibTorch with c10d's NCCL "
      "backend and NCCL's and the CUDA runtime's headers (see docs/libtorch.md)");
}

}  // namespace

extern "C" {

bool ct_distributed_gloo_available(void) noexcept {
#if defined(CTORCH_HAS_C10D_GLOO)
  return true;
#else
  return false;
#endif
}

bool ct_distributed_nccl_available(void) noexcept {
  // NCCL process groups exist only in CUDA builds of LibTorch compiled with USE_C10D_NCCL, and the
  // shim compiles them only where Package.swift found the headers they need.
#if defined(CTORCH_HAS_C10D_NCCL)
  return true;
#else
  return false;
#endif
}

ct_status ct_store_create(const char *host, uint16_t port, int32_t world_size, bool is_server, int64_t timeout_ms,
                          ct_store *out) noexcept {
#if defined(CTORCH_HAS_C10D)
  CT_TRY({
    if (host == nullptr || *host == '\0') throw std::invalid_argument("no master address given");
    if (world_size < 1) throw std::invalid_argument("the world size must be at least 1");
    c10d::TCPStoreOptions options;
    options.port = port;
    options.isServer = is_server;
    options.numWorkers = static_cast<size_t>(world_size);
    options.waitWorkers = false;  // the process group's rendezvous waits for everyone, with its timeout
    options.timeout = checked_timeout(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), options);
    *out = ct_store{new Store{std::move(store)}};
  })
#else
  CT_TRY(unavailable())
#endif
}

void ct_store_free(ct_store store) noexcept {
#if defined(CTORCH_HAS_C10D)
  try {
    delete static_cast<Store *>(store.ptr);
  } catch (...) {
  }
#endif
}

ct_status ct_store_add(ct_store store, const char *key, int64_t delta, int64_t *out) noexcept {
#if defined(CTORCH_HAS_C10D)
  CT_TRY(*out = S(store).store->add(std::string(key), delta))
#else
  CT_TRY(unavailable())
#endif
}

ct_status ct_process_group_gloo_create(ct_store store, int32_t rank, int32_t world_size, int64_t timeout_ms,
                                       ct_process_group *out) noexcept {
#if defined(CTORCH_HAS_C10D_GLOO)
  CT_TRY({
    check_rank(rank, world_size);
    const auto timeout = checked_timeout(timeout_ms);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(device_for_environment());
    options->threads = 2;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(S(store).store, rank, world_size, options);
    *out = ct_process_group{new Group{std::move(group), timeout}};
  })
#else
  CT_TRY(unavailable())
#endif
}

ct_status ct_process_group_nccl_create(ct_store store, int32_t rank, int32_t world_size, int64_t timeout_ms,
                                       ct_process_group *out) noexcept {
#if defined(CTORCH_HAS_C10D_NCCL)
  CT_TRY({
    check_rank(rank, world_size);
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = checked_timeout(timeout_ms);
    auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(S(store).store, rank, world_size, options);
    *out = ct_process_group{new Group{std::move(group), options->timeout}};
  })
#else
  CT_TRY(nccl_unavailable())
#endif
}

void ct_process_group_free(ct_process_group group) noexcept {
#if defined(CTORCH_HAS_C10D)
  try {
    delete static_cast<Group *>(group.ptr);
  } catch (...) {
  }
#endif
}

int32_t ct_process_group_rank(ct_process_group group) noexcept {
#if defined(CTORCH_HAS_C10D)
  return G(group).group->getRank();
#else
  return 0;
#endif
}

int32_t ct_process_group_size(ct_process_group group) noexcept {
#if defined(CTORCH_HAS_C10D)
  return G(group).group->getSize();
#else
  return 1;
#endif
}

ct_status ct_process_group_allreduce_sum(ct_process_group group, const ct_tensor *tensors, int32_t count) noexcept {
#if defined(CTORCH_HAS_C10D)
  CT_TRY({
    auto &g = G(group);
    auto list = tensors_of(tensors, count);
    on_flat(list, [&](std::vector<at::Tensor> &flat) {
      c10d::AllreduceOptions options;
      options.reduceOp = c10d::ReduceOp::SUM;
      options.timeout = g.timeout;
      wait(g, g.group->allreduce(flat, options), "allreduce");
    });
  })
#else
  CT_TRY(unavailable())
#endif
}

ct_status ct_process_group_broadcast(ct_process_group group, const ct_tensor *tensors, int32_t count,
                                     int32_t root) noexcept {
#if defined(CTORCH_HAS_C10D)
  CT_TRY({
    auto &g = G(group);
    if (root < 0 || root >= g.group->getSize()) throw std::invalid_argument("broadcast root " + std::to_string(root) + " is not a rank");
    auto list = tensors_of(tensors, count);
    on_flat(list, [&](std::vector<at::Tensor> &flat) {
      c10d::BroadcastOptions options;
      options.rootRank = root;
      options.timeout = g.timeout;
      wait(g, g.group->broadcast(flat, options), "broadcast");
    });
  })
#else
  CT_TRY(unavailable())
#endif
}

ct_status ct_process_group_barrier(ct_process_group group) noexcept {
#if defined(CTORCH_HAS_C10D)
  CT_TRY({
    auto &g = G(group);
    c10d::BarrierOptions options;
    options.timeout = g.timeout;
    wait(g, g.group->barrier(options), "barrier");
  })
#else
  CT_TRY(unavailable())
#endif
}

ct_status ct_process_group_allgather(ct_process_group group, ct_tensor input, ct_tensor *out) noexcept {
#if defined(CTORCH_HAS_C10D)
  CT_TRY({
    *out = ctorch::wrap(allgather_stacked(G(group), ctorch::T(input), "allgather"));
  })
#else
  CT_TRY(unavailable())
#endif
}

ct_status ct_sync_batch_norm(ct_process_group group, ct_tensor x, ct_tensor weight, ct_tensor bias,
                             ct_tensor running_mean, ct_tensor running_var, double momentum, double eps,
                             ct_tensor *out) noexcept {
#if defined(CTORCH_HAS_C10D)
  CT_TRY({
    const auto &g = G(group);
    const at::Tensor &input = ctorch::T(x);
    if (input.dim() < 2) throw std::invalid_argument("SyncBatchNorm: expected an input of at least 2 dimensions");
    const int64_t channels = input.size(1);
    at::Tensor mean, invstd;
    double count = 0;
    {
      at::NoGradGuard no_grad;
      // This rank's per-channel mean, sum of squared deviations and count, gathered from every rank
      // and combined in rank order (Chan et al.'s pairwise update), in double precision.
      const auto dims = reduced_dims(input);
      // var_mean accumulates in double on the CPU, as batch_norm's own statistics do.
      const auto local = at::var_mean(input, dims, /*unbiased=*/false, /*keepdim=*/false);
      const double local_count = static_cast<double>(input.numel() / std::max<int64_t>(channels, 1));
      const at::Tensor local_mean = std::get<1>(local).to(at::kDouble);
      const at::Tensor m2 = std::get<0>(local).to(at::kDouble) * local_count;
      const at::Tensor stats = at::cat({local_mean, m2,
                                        at::full({1}, local_count, input.options().dtype(at::kDouble))});
      const at::Tensor all = allgather_stacked(g, stats, "SyncBatchNorm statistics");
      at::Tensor total_mean = at::zeros({channels}, all.options()), total_m2 = at::zeros({channels}, all.options());
      for (int64_t r = 0; r < all.size(0); ++r) {
        const at::Tensor row = all[r];
        const double n = row[2 * channels].item<double>();
        if (n <= 0) continue;
        const at::Tensor delta = row.narrow(0, 0, channels) - total_mean;
        const double combined = count + n;
        total_mean = total_mean + delta * (n / combined);
        total_m2 = total_m2 + row.narrow(0, channels, channels) + delta * delta * (count * n / combined);
        count = combined;
      }
      if (count <= 1) {
        throw std::invalid_argument("SyncBatchNorm: expected more than 1 value per channel over all ranks, got " +
                                    std::to_string(static_cast<int64_t>(count)));
      }
      const at::Tensor variance = total_m2 / count;
      mean = total_mean.to(input.scalar_type());
      invstd = (variance + eps).rsqrt().to(input.scalar_type());
      if (running_mean.ptr != nullptr) {
        at::Tensor &rm = ctorch::T(running_mean);
        rm.mul_(1 - momentum).add_(total_mean.to(rm.scalar_type()) * momentum);
      }
      if (running_var.ptr != nullptr) {
        at::Tensor &rv = ctorch::T(running_var);
        rv.mul_(1 - momentum).add_((total_m2 / (count - 1)).to(rv.scalar_type()) * momentum);
      }
    }
    *out = ctorch::wrap(SyncBatchNormFunction::apply(input, ctorch::or_undefined(weight), ctorch::or_undefined(bias),
                                                     mean, invstd, count,
                                                     static_cast<int64_t>(reinterpret_cast<intptr_t>(&g))));
  })
#else
  CT_TRY(unavailable())
#endif
}

}  // extern "C"
