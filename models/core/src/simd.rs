//! Run-time dispatch of the encoders' own element-wise loops (GELU,
//! softmax, depthwise convolution, bias + activation epilogues) to the
//! widest vector instructions the CPU has.
//!
//! The workspace compiles for baseline x86-64 (SSE2, no FMA), where such
//! loops vectorise only 4 floats wide. [`vectorized`] runs a [`Kernel`]
//! inside code compiled for AVX-512 (else AVX2+FMA, else baseline) through
//! `pulp`'s safe dispatch, detected once per call from cached CPU flags.
//! Everything a kernel calls must be `#[inline(always)]`, so that it is
//! compiled inside the dispatched function; plain slice loops are then
//! vectorised by the compiler.

/// A loop to run under [`vectorized`]. Implement [`Kernel::run`] with
/// `#[inline(always)]`.
pub trait Kernel {
    fn run(self);
}

struct Dispatch<K>(K);

impl<K: Kernel> pulp::WithSimd for Dispatch<K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        self.0.run();
    }
}

/// Runs `kernel` compiled for the widest vector instructions available.
pub fn vectorized(kernel: impl Kernel) {
    pulp::Arch::new().dispatch(Dispatch(kernel));
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Square<'a>(&'a mut [f32]);

    impl Kernel for Square<'_> {
        #[inline(always)]
        fn run(self) {
            for x in self.0 {
                *x *= *x;
            }
        }
    }

    #[test]
    fn runs_the_kernel_over_every_element() {
        let mut xs: Vec<f32> = (0..37).map(|i| i as f32).collect();
        vectorized(Square(&mut xs));
        assert!(xs.iter().enumerate().all(|(i, &x)| x == (i * i) as f32));
    }
}
