// gridflow: CUDA kernels of the GPU backend (gridflow/backends/gpu.py).
//
// The Newton engine (gridflow/newton.py) runs the same steps on the CPU and the GPU; the two
// stages that need a sparse gather per scenario are kernels here, one per stage:
//
//   gridflow_ibus      Ibus = Ybus_t V_t for k scenarios, Ybus_t the base Ybus less scenario t's
//                      outaged branches (twin: CPUBatchOps.ibus)
//   gridflow_jacobian  J(V_t)'s values in the Jacobian pattern's storage order, with scenario t's
//                      outages, the distributed-slack column and pinned rows (twin:
//                      CPUBatchOps._values, i.e. gridflow.jacobian.jacobian_values)
//
// Conventions shared by every kernel:
//   * complex128 is double2 {x = real, y = imaginary}: the memory layout of NumPy/CuPy complex128.
//     No header is needed: the file compiles with nvcc and NVRTC (cupy.RawModule), and, with a
//     small shim for the CUDA keywords, as host C++ (the CuPy stand-in of the test suite runs
//     these very sources on the CPU).
//   * batched arrays are C-contiguous with the scenario row j as the leading axis: X[j, c] is
//     X[j * ncols + c]. Row j of a call is scenario sc[j] of the batch (0 <= sc[j] < T).
//   * outages: scenario t has the branches out_br[out_ptr[t] : out_ptr[t + 1]] out of service;
//     each scenario has a few (N-1: one), so a thread scans its scenario's list.
//   * every kernel is a grid-stride loop with no shared memory and no synchronization: any 1-D
//     launch covers the whole problem, and one thread per output element writes it alone.
//   * sizes that can exceed 2^31 (k * nb, k * nnzJ) are long long; indices int. Per unit; float64.

typedef long long i64;

// sources of a Jacobian value (gridflow.jacobian): Re/Im of dS/dVa or dS/dVm; the slack column
#define RE_DVA 0
#define RE_DVM 1
#define IM_DVA 2
#define IM_DVM 3
#define SLACK 4

__device__ __forceinline__ double2 gf_mul(double2 a, double2 b)
{
    return make_double2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// a * conj(b)
__device__ __forceinline__ double2 gf_mul_conj(double2 a, double2 b)
{
    return make_double2(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y);
}

__device__ __forceinline__ double2 gf_sub(double2 a, double2 b) { return make_double2(a.x - b.x, a.y - b.y); }

// 1 / |v|, and 0 at a de-energized bus (v = 0), as gridflow.jacobian does
__device__ __forceinline__ double gf_inv_abs(double2 v)
{
    const double m = hypot(v.x, v.y);
    return m > 0.0 ? 1.0 / m : 0.0;
}

// ------------------------------------------------------------------------------------------------
// gridflow_ibus: bus current injections of k scenarios.
//
//   Ibus[j, i] = sum_{p in row i of Ybus} Y_p V[j, col_p]
//                - sum_{branch b out in scenario sc[j], f_b == i} (Yff_b V[j, f_b] + Yft_b V[j, t_b])
//                - sum_{branch b out in scenario sc[j], t_b == i} (Ytf_b V[j, f_b] + Ytt_b V[j, t_b])
//
// One thread per (row j, bus i); Ybus rows hold ~4 entries, so a warp per row would idle.
//
//   indptr, indices  int32      (nb + 1,), (nnzY,)  Ybus CSR, base topology
//   ydata            complex128 (nnzY,)
//   V                complex128 (k, nb)
//   sc               int32      (k,)        scenario of each row
//   out_ptr          int32      (T + 1,)    outage lists (see the conventions); all 0: none
//   out_br           int32      (m,)        outaged branch rows (length >= 1; unread when m = 0)
//   bf, bt           int32      (nl,)       branch from / to bus
//   yff, yft, ytf, ytt complex128 (nl,)     each branch's Ybus admittances
//   Ibus             complex128 (k, nb)     out
// ------------------------------------------------------------------------------------------------
extern "C" __global__ void gridflow_ibus(const int* __restrict__ indptr, const int* __restrict__ indices,
                                         const double2* __restrict__ ydata, const double2* __restrict__ V,
                                         const int* __restrict__ sc, const int* __restrict__ out_ptr,
                                         const int* __restrict__ out_br, const int* __restrict__ bf,
                                         const int* __restrict__ bt, const double2* __restrict__ yff,
                                         const double2* __restrict__ yft, const double2* __restrict__ ytf,
                                         const double2* __restrict__ ytt, double2* __restrict__ Ibus, const i64 k,
                                         const int nb)
{
    const i64 total = k * (i64)nb;
    for (i64 g = blockIdx.x * (i64)blockDim.x + threadIdx.x; g < total; g += (i64)gridDim.x * blockDim.x) {
        const i64 j = g / nb;
        const int i = (int)(g - j * nb);
        const double2* v = V + j * nb;
        double2 acc = make_double2(0.0, 0.0);
        const int end = indptr[i + 1];
        for (int p = indptr[i]; p < end; ++p) {
            const double2 term = gf_mul(ydata[p], v[indices[p]]);
            acc.x += term.x;
            acc.y += term.y;
        }
        const int t = sc[j];
        for (int q = out_ptr[t]; q < out_ptr[t + 1]; ++q) {
            const int b = out_br[q];
            const double2 vf = v[bf[b]];
            const double2 vt = v[bt[b]];
            if (bf[b] == i) {
                const double2 a = gf_mul(yff[b], vf);
                const double2 c = gf_mul(yft[b], vt);
                acc = gf_sub(acc, make_double2(a.x + c.x, a.y + c.y));
            }
            if (bt[b] == i) {
                const double2 a = gf_mul(ytf[b], vf);
                const double2 c = gf_mul(ytt[b], vt);
                acc = gf_sub(acc, make_double2(a.x + c.x, a.y + c.y));
            }
        }
        Ibus[g] = acc;
    }
}

// ------------------------------------------------------------------------------------------------
// gridflow_jacobian: J(V_t)'s values for k scenarios, in the pattern's storage order.
//
// J value m of a P/Q row derives from Ybus stored entry p = src[m] at row i = yrow[p], column
// kk = ycol[p], with scenario t's value Y_p less the admittances of its outaged branches stored
// at p (pff/pft/ptf/ptt). With a_p = V_i conj(Y_p V_kk) and S_i = V_i conj(Ibus_i):
//
//   dS/dVa[i, kk] = -j a_p          (+ j S_i        when i == kk)
//   dS/dVm[i, kk] = a_p / |V_kk|    (+ S_i / |V_i|  when i == kk)
//
// and kind[m] picks the part (RE_DVA: Im a_p - Im S_i on the diagonal; IM_DVA: -Re a_p + Re S_i;
// RE_DVM: Re a_p / |V_kk| + Re S_i / |V_i|; IM_DVM: Im a_p / |V_kk| + Im S_i / |V_i|; 1 / |V| is
// 0 at a de-energized bus). A SLACK value (the distributed-slack column) is -w[j, src[m]]
// (src is the bus; 0 without w). A pinned row (free[sc[j], jrow[m]] false) is the identity row:
// 1 on the diagonal (jrow == jcol), 0 elsewhere.
//
// One thread per (row j, J value m); consecutive threads write consecutive m.
//
//   V, Ibus          complex128 (k, nb)
//   ydata            complex128 (nnzY,);  yrow, ycol int32 (nnzY,)
//   src              int32      (nnzJ,)   Ybus entry (or bus, for SLACK) of each J value
//   kind             int8       (nnzJ,)   RE_DVA, RE_DVM, IM_DVA, IM_DVM or SLACK
//   jrow, jcol       int32      (nnzJ,)   row and column of each J value
//   sc, out_ptr, out_br  as in gridflow_ibus
//   pff, pft, ptf, ptt   int32  (nl,)     storage positions of each branch's admittances in ydata
//   yff, yft, ytf, ytt   complex128 (nl,)
//   w                float64    (k, nb)   participation factors, read when has_w
//   free_rows        bool       (T, n)    false where a row is pinned, read when has_free
//   J                float64    (k, nnzJ) out
// ------------------------------------------------------------------------------------------------
extern "C" __global__ void gridflow_jacobian(const double2* __restrict__ V, const double2* __restrict__ Ibus,
                                             const double2* __restrict__ ydata, const int* __restrict__ yrow,
                                             const int* __restrict__ ycol, const int* __restrict__ src,
                                             const signed char* __restrict__ kind, const int* __restrict__ jrow,
                                             const int* __restrict__ jcol, const int* __restrict__ sc,
                                             const int* __restrict__ out_ptr, const int* __restrict__ out_br,
                                             const int* __restrict__ pff, const int* __restrict__ pft,
                                             const int* __restrict__ ptf, const int* __restrict__ ptt,
                                             const double2* __restrict__ yff, const double2* __restrict__ yft,
                                             const double2* __restrict__ ytf, const double2* __restrict__ ytt,
                                             const double* __restrict__ w, const int has_w,
                                             const bool* __restrict__ free_rows, const int has_free,
                                             double* __restrict__ J, const i64 k, const int nb, const int n,
                                             const int nnzJ)
{
    const i64 total = k * (i64)nnzJ;
    for (i64 g = blockIdx.x * (i64)blockDim.x + threadIdx.x; g < total; g += (i64)gridDim.x * blockDim.x) {
        const i64 j = g / nnzJ;
        const int m = (int)(g - j * nnzJ);
        const int t = sc[j];
        if (has_free && !free_rows[(i64)t * n + jrow[m]]) {
            J[g] = jrow[m] == jcol[m] ? 1.0 : 0.0;
            continue;
        }
        const int kd = kind[m];
        if (kd == SLACK) {
            J[g] = has_w ? -w[j * nb + src[m]] : 0.0;
            continue;
        }
        const int p = src[m];
        const int i = yrow[p];
        const int kk = ycol[p];
        double2 y = ydata[p];
        for (int q = out_ptr[t]; q < out_ptr[t + 1]; ++q) {
            const int b = out_br[q];
            if (pff[b] == p) y = gf_sub(y, yff[b]);
            if (pft[b] == p) y = gf_sub(y, yft[b]);
            if (ptf[b] == p) y = gf_sub(y, ytf[b]);
            if (ptt[b] == p) y = gf_sub(y, ytt[b]);
        }
        const double2* v = V + j * nb;
        const double2 vi = v[i];
        const double2 vk = v[kk];
        const double2 a = gf_mul_conj(vi, gf_mul(y, vk));
        double val;
        if (kd == RE_DVA) {
            val = a.y;
        } else if (kd == IM_DVA) {
            val = -a.x;
        } else {
            val = (kd == RE_DVM ? a.x : a.y) * gf_inv_abs(vk);
        }
        if (i == kk) {
            const double2 s = gf_mul_conj(vi, Ibus[j * nb + i]);
            if (kd == RE_DVA) {
                val -= s.y;
            } else if (kd == IM_DVA) {
                val += s.x;
            } else {
                val += (kd == RE_DVM ? s.x : s.y) * gf_inv_abs(vi);
            }
        }
        J[g] = val;
    }
}
