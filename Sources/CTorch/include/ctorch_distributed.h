// ctorch_distributed.h — c10d (LibTorch's distributed layer) through the C boundary: a TCPStore
// rendezvous and a Gloo or NCCL process group with its collectives. Same rules as ctorch.h: every entry
// point is noexcept, returns a ct_status and leaves its message in ct_last_error(). No gloo type
// appears here, so this header compiles against any LibTorch; where the build has no Gloo
// (CTORCH_HAS_C10D_GLOO unset, e.g. a PyTorch wheel without <gloo/...> headers) every call fails
// with "not available in this LibTorch build".
//
// Every collective waits on its c10d Work with the group's timeout: a peer that died or never
// came is an error after at most that long, never a hang.
#ifndef CTORCH_DISTRIBUTED_H
#define CTORCH_DISTRIBUTED_H

#include "ctorch.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Opaque handle to a c10d::TCPStore (owned by the caller; free with ct_store_free).
typedef struct ct_store { void *ptr; } ct_store;
/// Opaque handle to a c10d process group and its timeout (free with ct_process_group_free).
typedef struct ct_process_group { void *ptr; } ct_process_group;

/// Whether this build has c10d with Gloo.
bool ct_distributed_gloo_available(void) CT_NOEXCEPT;
/// Whether this build has c10d with NCCL (CUDA); false on CPU-only LibTorch builds.
bool ct_distributed_nccl_available(void) CT_NOEXCEPT;

/// A TCPStore at host:port. `is_server`: this process listens on `port` (rank 0); the others
/// connect, retrying for up to `timeout_ms` before failing. Store reads wait at most `timeout_ms`.
ct_status ct_store_create(const char *host, uint16_t port, int32_t world_size, bool is_server,
                          int64_t timeout_ms, ct_store *out) CT_NOEXCEPT;
void ct_store_free(ct_store store) CT_NOEXCEPT;
/// Atomically adds `delta` to the integer at `key` (created as 0) and returns the new value.
ct_status ct_store_add(ct_store store, const char *key, int64_t delta, int64_t *out) CT_NOEXCEPT;

/// A Gloo process group over `store` (rank in 0..<world_size). Its devices are the interfaces named
/// by GLOO_SOCKET_IFNAME (comma-separated), else the address this host's name resolves to (else
/// loopback), as torch.distributed does. Connecting and every collective time out after `timeout_ms`.
ct_status ct_process_group_gloo_create(ct_store store, int32_t rank, int32_t world_size, int64_t timeout_ms,
                                       ct_process_group *out) CT_NOEXCEPT;
/// An NCCL process group over `store` (CUDA tensors; one GPU per rank, the current CUDA device), with
/// the same collectives and timeout rule. Fails with "not available in this build" unless the shim was
/// compiled against a CUDA LibTorch with NCCL (CTORCH_HAS_C10D_NCCL).
ct_status ct_process_group_nccl_create(ct_store store, int32_t rank, int32_t world_size, int64_t timeout_ms,
                                       ct_process_group *out) CT_NOEXCEPT;
void ct_process_group_free(ct_process_group group) CT_NOEXCEPT;
int32_t ct_process_group_rank(ct_process_group group) CT_NOEXCEPT;
int32_t ct_process_group_size(ct_process_group group) CT_NOEXCEPT;

/// Sums `tensors` element-wise across ranks, in place. Several tensors (same dtype) travel as one
/// flat buffer, so one call is one collective whatever their number.
ct_status ct_process_group_allreduce_sum(ct_process_group group, const ct_tensor *tensors, int32_t count) CT_NOEXCEPT;
/// Copies `root`'s `tensors` into every rank's, in place (several tensors travel as one flat buffer).
ct_status ct_process_group_broadcast(ct_process_group group, const ct_tensor *tensors, int32_t count,
                                     int32_t root) CT_NOEXCEPT;
/// Waits until every rank has called it.
ct_status ct_process_group_barrier(ct_process_group group) CT_NOEXCEPT;
/// Every rank's `input` (same shape on all ranks), stacked along a new first dimension of size world_size.
ct_status ct_process_group_allgather(ct_process_group group, ct_tensor input, ct_tensor *out) CT_NOEXCEPT;

/// Batch normalisation in training behaviour with the statistics of every rank's batch together
/// (PyTorch's SyncBatchNorm): each rank's per-channel mean, squared deviations and count are
/// gathered and combined in rank order; the running statistics (either may be NULL) are updated with
/// `momentum` and the unbiased variance, as batch_norm does; backward gathers every rank's
/// `sum(dy)` and `sum(dy * (x - mean))` for the input gradient. `weight`/`bias` may be NULL (no
/// affine). Every rank of `group` must call it for the same layers in the same order, and the
/// group must outlive the backward pass of its output.
ct_status ct_sync_batch_norm(ct_process_group group, ct_tensor x, ct_tensor weight, ct_tensor bias,
                             ct_tensor running_mean, ct_tensor running_var, double momentum, double eps,
                             ct_tensor *out) CT_NOEXCEPT;

#ifdef __cplusplus
}
#endif

#endif
