// Principal directions of a set of vectors, exactly and deterministically: the eigenvectors of their
// (uncentred) second-moment matrix by Householder tridiagonalisation and the implicit QL algorithm
// (tred2/tql2 as in EISPACK and JAMA), in float64. O(n^3) once: well under a second for the teacher's
// 512 dimensions (cyclic Jacobi took 15-120 s here), and no random start or convergence knob.

/** Symmetric n x n (row-major, float64) -> eigenvalues (descending) and eigenvectors as rows. */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const V = Float64Array.from(a); // V[i * n + j]
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tred2(V, d, e, n);
  tql2(V, d, e, n);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y]! - d[x]! || x - y);
  const values = Float64Array.from(order, (i) => d[i]!);
  const vectors = new Float64Array(n * n);
  order.forEach((col, r) => {
    // Sign fixed so the largest component is positive: the same basis on every run and platform.
    let big = 0;
    for (let k = 0; k < n; k++) if (Math.abs(V[k * n + col]!) > Math.abs(big)) big = V[k * n + col]!;
    const sign = big < 0 ? -1 : 1;
    for (let k = 0; k < n; k++) vectors[r * n + k] = sign * V[k * n + col]!;
  });
  return { values, vectors };
}

/** Householder reduction to tridiagonal form; V ends as the accumulated orthogonal transform. */
function tred2(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let j = 0; j < n; j++) d[j] = V[(n - 1) * n + j]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
        V[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] = d[k]! / scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        V[j * n + i] = f;
        g = e[j]! + V[j * n + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += V[k * n + j]! * d[k]!;
          e[k] = e[k]! + V[k * n + j]! * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = e[j]! / h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = e[j]! - hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) V[k * n + j] = V[k * n + j]! - (f * e[k]! + g * d[k]!);
        d[j] = V[(i - 1) * n + j]!;
        V[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  for (let i = 0; i < n - 1; i++) {
    V[(n - 1) * n + i] = V[i * n + i]!;
    V[i * n + i] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = V[k * n + i + 1]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += V[k * n + i + 1]! * V[k * n + j]!;
        for (let k = 0; k <= i; k++) V[k * n + j] = V[k * n + j]! - g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) V[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = V[(n - 1) * n + j]!;
    V[(n - 1) * n + j] = 0;
  }
  V[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** Implicit QL on the tridiagonal (d, e); eigenvectors accumulate into V's columns. */
function tql2(V: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      do {
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        f += h;
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          for (let k = 0; k < n; k++) {
            h = V[k * n + i + 1]!;
            V[k * n + i + 1] = s * V[k * n + i]! + c * h;
            V[k * n + i] = c * V[k * n + i]! - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}

/** Sum of x x^T over the rows of a (rows x dim) matrix, float64. */
export function secondMoment(data: Float32Array, dim: number): Float64Array {
  const m = new Float64Array(dim * dim);
  const rows = data.length / dim;
  const x = new Float64Array(dim);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < dim; k++) x[k] = data[r * dim + k]!;
    for (let i = 0; i < dim; i++) {
      const xi = x[i]!;
      if (xi === 0) continue;
      const row = i * dim;
      for (let j = i; j < dim; j++) m[row + j] = m[row + j]! + xi * x[j]!;
    }
  }
  for (let i = 0; i < dim; i++) for (let j = 0; j < i; j++) m[i * dim + j] = m[j * dim + i]!;
  return m;
}

/** The top `k` principal directions as a (k x dim) float32 basis, rows orthonormal. */
export function topDirections(moment: Float64Array, dim: number, k: number): Float32Array {
  const { vectors } = symmetricEigen(moment, dim);
  return Float32Array.from(vectors.subarray(0, k * dim));
}

/** y = B x for a (k x dim) basis B: a vector's coordinates in the basis. */
export function project(basis: Float32Array, k: number, x: Float32Array, out = new Float32Array(k)): Float32Array {
  const dim = x.length;
  for (let r = 0; r < k; r++) {
    let s = 0;
    const base = r * dim;
    for (let j = 0; j < dim; j++) s += basis[base + j]! * x[j]!;
    out[r] = s;
  }
  return out;
}

/**
 * Ridge regression of targets on inputs, both (rows x k): W (k x k, row-major) minimising
 * sum |W x - y|^2 + lambda |W|^2, through the eigen-decomposition of X^T X (no matrix inverse).
 */
export function ridgeMap(x: Float32Array, y: Float32Array, k: number, lambda: number): Float64Array {
  const rows = x.length / k;
  const xx = secondMoment(x, k);
  const yx = new Float64Array(k * k); // sum y x^T
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < k; i++) {
      const yi = y[r * k + i]!;
      for (let j = 0; j < k; j++) yx[i * k + j] = yx[i * k + j]! + yi * x[r * k + j]!;
    }
  const { values, vectors } = symmetricEigen(xx, k); // rows of `vectors` are eigenvectors q
  // (X^T X + lambda)^-1 = sum_q q q^T / (value + lambda); W = YX^T times it.
  const inv = new Float64Array(k * k);
  for (let q = 0; q < k; q++) {
    const s = 1 / (values[q]! + lambda);
    for (let i = 0; i < k; i++) {
      const a = vectors[q * k + i]! * s;
      for (let j = 0; j < k; j++) inv[i * k + j] = inv[i * k + j]! + a * vectors[q * k + j]!;
    }
  }
  const w = new Float64Array(k * k);
  for (let i = 0; i < k; i++)
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let m = 0; m < k; m++) s += yx[i * k + m]! * inv[m * k + j]!;
      w[i * k + j] = s;
    }
  return w;
}
