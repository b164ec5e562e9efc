// gridflow: CUDA kernels for the batched Newton-Raphson AC power flow.
//
// One kernel per stage of a Newton iteration, for T scenarios at once that share one
// network (Ybus) and one Jacobian sparsity pattern:
//
//   gridflow_mismatch        Ibus = Ybus V,  mis = V conj(Ibus) - Sbus
//   gridflow_jacobian        J's values in its fixed CSR pattern (the fused twin of
//                            gridflow.jacobian.jacobian_values)
//   gridflow_update_voltage  Va[pvpq] += step dx[:npvpq], Vm[pq] += step dx[npvpq:], V = Vm e^(j Va)
//   gridflow_max_abs         ||F_t||_inf per scenario (the convergence test)
//
// Conventions shared by every kernel:
//   * complex128 is double2 {x = real, y = imaginary}: the memory layout of NumPy/CuPy
//     complex128, so CuPy arrays are passed as they are. No header is needed: the file
//     compiles with plain nvcc and with NVRTC (cupy.RawModule).
//   * batched arrays are C-contiguous with the scenario t as the leading axis: X[t, j] is
//     X[t * ncols + j].
//   * sizes that can exceed 2^31 (T * nb, T * nnzJ) are long long; row/column counts int.
//   * every kernel is a grid-stride loop: any 1-D launch covers the whole problem.
//   * per unit throughout; float64 only.

typedef long long i64;

// sources of a Jacobian value (gridflow.jacobian): real/imaginary part of dS/dVa or dS/dVm
#define RE_DVA 0
#define RE_DVM 1
#define IM_DVA 2
#define IM_DVM 3

__device__ __forceinline__ double2 gf_mul(double2 a, double2 b)
{
    return make_double2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// a * conj(b)
__device__ __forceinline__ double2 gf_mul_conj(double2 a, double2 b)
{
    return make_double2(a.x * b.x + a.y * b.y, a.y * b.x - a.x * b.y);
}

__device__ __forceinline__ double gf_abs(double2 a) { return hypot(a.x, a.y); }

// max that propagates NaN (a NaN anywhere in F must make ||F||_inf NaN)
__device__ __forceinline__ double gf_nanmax(double a, double b)
{
    if (a != a) return a;
    return (b != b || b > a) ? b : a;
}

// ------------------------------------------------------------------------------------
// gridflow_mismatch: batched CSR sparse matrix-vector product and power mismatch.
//
//   Ibus[t, i] = sum_{p in row i} Ydata[p] * V[t, indices[p]]
//   mis[t, i]  = V[t, i] * conj(Ibus[t, i]) - Sbus[t * s_stride + i]
//
// One thread per (scenario t, bus row i); Ybus rows hold ~4 entries, so a warp per row
// would idle. Terms are summed in stored order, as SciPy's CSR product does.
//
//   indptr   int32      (nb + 1,)   Ybus CSR row pointers (shared by all scenarios)
//   indices  int32      (nnzY,)     Ybus column indices
//   ydata    complex128 (nnzY,)     Ybus values
//   V        complex128 (T, nb)     bus voltages
//   Sbus     complex128 (T, nb) with s_stride = nb, or (nb,) with s_stride = 0
//   Ibus     complex128 (T, nb)     out
//   mis      complex128 (T, nb)     out
// ------------------------------------------------------------------------------------
extern "C" __global__ void gridflow_mismatch(const int* __restrict__ indptr, const int* __restrict__ indices,
                                             const double2* __restrict__ ydata, const double2* __restrict__ V,
                                             const double2* __restrict__ Sbus, const i64 s_stride,
                                             double2* __restrict__ Ibus, double2* __restrict__ mis,
                                             const i64 T, const int nb)
{
    const i64 total = T * (i64)nb;
    for (i64 g = blockIdx.x * (i64)blockDim.x + threadIdx.x; g < total; g += (i64)gridDim.x * blockDim.x) {
        const i64 t = g / nb;
        const int i = (int)(g - t * nb);
        const double2* v = V + t * nb;
        double2 acc = make_double2(0.0, 0.0);
        const int end = indptr[i + 1];
        for (int p = indptr[i]; p < end; ++p) {
            const double2 term = gf_mul(ydata[p], v[indices[p]]);
            acc.x += term.x;
            acc.y += term.y;
        }
        Ibus[g] = acc;
        const double2 s = gf_mul_conj(v[i], acc);
        const double2 sb = Sbus[t * s_stride + i];
        mis[g] = make_double2(s.x - sb.x, s.y - sb.y);
    }
}

// ------------------------------------------------------------------------------------
// gridflow_jacobian: J's values for every scenario, straight into J's CSR data array.
//
// J nonzero m derives from Ybus stored entry p = src[m] at row i = yrow[p], column
// k = ycol[p]. With a_p = V_i conj(Y_p V_k) and S_i = V_i conj(Ibus_i):
//
//   dS/dVa[i, k] = -j a_p        (+ j S_i       when i == k)
//   dS/dVm[i, k] = a_p / |V_k|   (+ S_i / |V_i| when i == k)
//
// and kind[m] picks the part: RE_DVA Re dS/dVa, RE_DVM Re dS/dVm, IM_DVA Im dS/dVa,
// IM_DVM Im dS/dVm. So
//
//   RE_DVA:  Im a_p            (- Im S_i          on the diagonal)
//   IM_DVA: -Re a_p            (+ Re S_i          on the diagonal)
//   RE_DVM:  Re a_p / |V_k|    (+ Re S_i / |V_i|  on the diagonal)
//   IM_DVM:  Im a_p / |V_k|    (+ Im S_i / |V_i|  on the diagonal)
//
// One thread per (scenario t, J nonzero m); consecutive threads write consecutive m.
//
//   V, Ibus  complex128 (T, nb)
//   ydata    complex128 (nnzY,);  yrow, ycol int32 (nnzY,): row and column of each entry
//   src      int32      (nnzJ,)   Ybus entry of each J value
//   kind     int8       (nnzJ,)   RE_DVA, RE_DVM, IM_DVA or IM_DVM
//   J        float64    (T, nnzJ) out, in the pattern's order
// ------------------------------------------------------------------------------------
extern "C" __global__ void gridflow_jacobian(const double2* __restrict__ V, const double2* __restrict__ Ibus,
                                             const double2* __restrict__ ydata, const int* __restrict__ yrow,
                                             const int* __restrict__ ycol, const int* __restrict__ src,
                                             const signed char* __restrict__ kind, double* __restrict__ J,
                                             const i64 T, const int nb, const int nnzJ)
{
    const i64 total = T * (i64)nnzJ;
    for (i64 g = blockIdx.x * (i64)blockDim.x + threadIdx.x; g < total; g += (i64)gridDim.x * blockDim.x) {
        const i64 t = g / nnzJ;
        const int m = (int)(g - t * nnzJ);
        const int p = src[m];
        const int i = yrow[p];
        const int k = ycol[p];
        const int kd = kind[m];
        const double2* v = V + t * nb;
        const double2 vi = v[i];
        const double2 vk = v[k];
        const double2 a = gf_mul_conj(vi, gf_mul(ydata[p], vk));
        double val;
        if (kd == RE_DVA) {
            val = a.y;
        } else if (kd == IM_DVA) {
            val = -a.x;
        } else {
            val = (kd == RE_DVM ? a.x : a.y) / gf_abs(vk);
        }
        if (i == k) {
            const double2 s = gf_mul_conj(vi, Ibus[t * nb + i]);
            if (kd == RE_DVA) {
                val -= s.y;
            } else if (kd == IM_DVA) {
                val += s.x;
            } else {
                val += (kd == RE_DVM ? s.x : s.y) / gf_abs(vi);
            }
        }
        J[g] = val;
    }
}

// ------------------------------------------------------------------------------------
// gridflow_update_voltage: the Newton update, for active scenarios only.
//
// For every scenario t with active[t] (all when has_active == 0) and every bus i:
//
//   Va[t, i] += step_t * dx[t, pos_va[i]]   if pos_va[i] >= 0   (i in pvpq, pos_va[i] its index there)
//   Vm[t, i] += step_t * dx[t, pos_vm[i]]   if pos_vm[i] >= 0   (i in pq: npvpq + its index in pq)
//   V[t, i]   = Vm[t, i] * (cos Va[t, i] + j sin Va[t, i])
//
// with step_t = step[t] when has_step, else 1 (newtonpf's full step; a line search passes
// its per-scenario step length, and dx = J^-1 F callers pass a negative one). Inactive
// scenarios are left untouched. One thread per (t, i), so no two threads share an output.
//
//   dx        float64    (T, n)    n = npvpq + npq
//   pos_va    int32      (nb,)     -1 where bus i has no angle unknown
//   pos_vm    int32      (nb,)     -1 where bus i has no magnitude unknown
//   active    uint8/bool (T,)      read only when has_active != 0
//   step      float64    (T,)      read only when has_step != 0
//   Va, Vm    float64    (T, nb)   in/out
//   V         complex128 (T, nb)   out (written for active scenarios)
// ------------------------------------------------------------------------------------
extern "C" __global__ void gridflow_update_voltage(const double* __restrict__ dx, const i64 n,
                                                   const int* __restrict__ pos_va, const int* __restrict__ pos_vm,
                                                   const unsigned char* __restrict__ active, const int has_active,
                                                   const double* __restrict__ step, const int has_step,
                                                   double* __restrict__ Va, double* __restrict__ Vm,
                                                   double2* __restrict__ V, const i64 T, const int nb)
{
    const i64 total = T * (i64)nb;
    for (i64 g = blockIdx.x * (i64)blockDim.x + threadIdx.x; g < total; g += (i64)gridDim.x * blockDim.x) {
        const i64 t = g / nb;
        if (has_active && !active[t]) continue;
        const int i = (int)(g - t * nb);
        const double s = has_step ? step[t] : 1.0;
        const int ja = pos_va[i];
        const int jm = pos_vm[i];
        double va = Va[g];
        double vm = Vm[g];
        if (ja >= 0) {
            va += s * dx[t * n + ja];
            Va[g] = va;
        }
        if (jm >= 0) {
            vm += s * dx[t * n + jm];
            Vm[g] = vm;
        }
        double sn, cs;
        sincos(va, &sn, &cs);
        V[g] = make_double2(vm * cs, vm * sn);
    }
}

// ------------------------------------------------------------------------------------
// gridflow_max_abs: out[t] = max_j |F[t, j]| (0 when n == 0; NaN if any F[t, j] is NaN).
//
// One block per scenario (grid-stride over t); blockDim.x must be a multiple of 32, at
// most 1024. Threads stride over j, then a warp-shuffle and shared-memory reduction.
//
//   F    float64 (T, n)
//   out  float64 (T,)
// ------------------------------------------------------------------------------------
extern "C" __global__ void gridflow_max_abs(const double* __restrict__ F, const i64 n, double* __restrict__ out,
                                            const i64 T)
{
    __shared__ double warp_max[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    for (i64 t = blockIdx.x; t < T; t += gridDim.x) {
        const double* f = F + t * n;
        double m = 0.0;
        for (i64 j = threadIdx.x; j < n; j += blockDim.x) m = gf_nanmax(m, fabs(f[j]));
        for (int off = 16; off > 0; off >>= 1) m = gf_nanmax(m, __shfl_down_sync(0xffffffffu, m, off));
        if (lane == 0) warp_max[warp] = m;
        __syncthreads();
        if (warp == 0) {
            m = lane < nwarps ? warp_max[lane] : 0.0;
            for (int off = 16; off > 0; off >>= 1) m = gf_nanmax(m, __shfl_down_sync(0xffffffffu, m, off));
            if (lane == 0) out[t] = m;
        }
        __syncthreads();  // warp_max is reused by the next scenario
    }
}
