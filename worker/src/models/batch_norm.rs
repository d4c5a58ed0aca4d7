//! Batch norm in training mode with a backward pass of our own, for
//! channels-last activations on the CPU whose width is not a multiple of 16.
//!
//! libtorch's channels-last batch-norm backward vectorises across channels only:
//! at widths that are not a multiple of its vector (8 channels is half an
//! AVX-512 register) it falls to scalar code, and the pruned networks that
//! channels-last makes fast (their convs at 8 or 24 channels run 2.4–3.7× faster
//! than contiguous) spent half their training step there. On a 2-core AVX-512
//! CPU, forward and backward of [128, 8, 32, 32] took 10.1 ms with libtorch's
//! backward and 3.4 ms with ours, of [128, 24, 16, 16] 3.3 against 1.5 ms; at
//! multiples of 16 libtorch's own vectorises, and those widths keep it. The
//! ResNet-20 group-pruned to 8/16/40 channels trains 1.25× faster channels-last
//! with it, where it trained 1.3× faster contiguous before (`cargo xtask bench
//! train`). The kernel (`csrc/batch_norm.cpp`) runs libtorch's forward and
//! replaces only the backward, through a libtorch autograd function: outputs,
//! gradients and running statistics are those of `torch.batch_norm` to fp32
//! rounding (tested against it below). Second derivatives are not recorded
//! (nothing in scop takes them).

use tch::{Device, Kind, TchError, Tensor};

use super::layout::is_channels_last;

#[allow(unsafe_code)]
unsafe extern "C" {
    fn scop_batch_norm_channels_last(
        x: *const torch_sys::C_tensor,
        weight: *const torch_sys::C_tensor,
        bias: *const torch_sys::C_tensor,
        running_mean: *const torch_sys::C_tensor,
        running_var: *const torch_sys::C_tensor,
        momentum: f64,
        eps: f64,
    ) -> *mut torch_sys::C_tensor;
    fn scop_batch_norm_error() -> *const std::ffi::c_char;
}

/// Whether [`train_channels_last`] is the faster way to normalise `xs` in
/// training mode with fp32 `weight`: a channels-last fp32 CPU activation whose
/// channel count is not a multiple of 16.
pub fn takes_own_kernel(xs: &Tensor, weight: &Tensor) -> bool {
    xs.device() == Device::Cpu
        && xs.kind() == Kind::Float
        && weight.kind() == Kind::Float
        && is_channels_last(xs)
        && xs.size()[1] % 16 != 0
}

/// `torch.batch_norm(xs, …, training=True)` with our backward pass; `xs` as
/// [`takes_own_kernel`] requires (the kernel refuses anything else, with a reason).
pub fn train_channels_last(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f64,
    eps: f64,
) -> Result<Tensor, TchError> {
    #[allow(unsafe_code)]
    // SAFETY: every pointer is a live tensor borrowed for the call; the kernel
    // returns a tensor it allocated for us to own, or null with its reason kept
    // in a thread-local string that stays valid until the next call on this thread.
    unsafe {
        let out = scop_batch_norm_channels_last(
            xs.as_ptr(),
            weight.as_ptr(),
            bias.as_ptr(),
            running_mean.as_ptr(),
            running_var.as_ptr(),
            momentum,
            eps,
        );
        if out.is_null() {
            let reason = std::ffi::CStr::from_ptr(scop_batch_norm_error()).to_string_lossy().into_owned();
            return Err(TchError::Torch(format!("channels-last batch norm: {reason}")));
        }
        Ok(Tensor::from_ptr(out))
    }
}

#[cfg(test)]
mod tests {
    use tch::Reduction;

    use super::*;
    use crate::models::layout::channels_last;

    /// Output, input gradient, weight and bias gradients, running mean and variance.
    fn run(xs: &Tensor, upstream: &Tensor, own: bool) -> Vec<Tensor> {
        let c = xs.size()[1];
        let opts = (Kind::Float, Device::Cpu);
        let weight = Tensor::linspace(0.5, 1.5, c, opts).set_requires_grad(true);
        let bias = Tensor::linspace(-0.2, 0.3, c, opts).set_requires_grad(true);
        let (mean, var) = (Tensor::zeros([c], opts), Tensor::ones([c], opts));
        let x = xs.detach().set_requires_grad(true);
        let y = if own {
            train_channels_last(&x, &weight, &bias, &mean, &var, 0.1, 1e-5).unwrap()
        } else {
            Tensor::batch_norm(
                &x,
                Some(&weight),
                Some(&bias),
                Some(&mean),
                Some(&var),
                true,
                0.1,
                1e-5,
                false,
            )
        };
        y.mse_loss(upstream, Reduction::Sum).backward();
        vec![y.detach(), x.grad(), weight.grad(), bias.grad(), mean, var]
    }

    #[test]
    fn matches_torch_batch_norm_in_values_gradients_and_statistics() {
        tch::manual_seed(0);
        // Widths with k = 2, 1 (a multiple of 16, still correct) and 16 (odd); row counts
        // that leave a tail of rows outside whole periods (3·5·5 = 75) and several blocks.
        for (c, n, hw) in [(8, 3, 5), (8, 16, 32), (24, 8, 16), (40, 4, 8), (16, 2, 7), (3, 5, 9)] {
            let xs = channels_last(&(Tensor::randn([n, c, hw, hw], (Kind::Float, Device::Cpu)) * 3.0 + 1.0))
                .unwrap();
            let upstream = Tensor::randn([n, c, hw, hw], (Kind::Float, Device::Cpu));
            assert!(takes_own_kernel(&xs, &xs) == (c % 16 != 0), "width {c}");
            let (ours, theirs) = (run(&xs, &upstream, true), run(&xs, &upstream, false));
            let names = ["output", "input grad", "weight grad", "bias grad", "running mean", "running var"];
            for ((name, a), b) in names.iter().zip(&ours).zip(&theirs) {
                let scale = b.abs().max().double_value(&[]).max(1e-3);
                let diff = (a - b).abs().max().double_value(&[]);
                assert!(
                    diff <= 1e-5 * scale,
                    "C={c} N={n} {hw}x{hw}: {name} differs by {diff} (scale {scale})"
                );
            }
            assert!(is_channels_last(&ours[1]), "C={c}: the input gradient keeps the layout");
        }
    }

    #[test]
    fn refuses_what_it_cannot_run_with_a_reason() {
        let opts = (Kind::Float, Device::Cpu);
        let (w, b) = (Tensor::ones([8], opts), Tensor::zeros([8], opts));
        let (m, v) = (Tensor::zeros([8], opts), Tensor::ones([8], opts));
        let contiguous = Tensor::ones([2, 8, 4, 4], opts);
        let err = train_channels_last(&contiguous, &w, &b, &m, &v, 0.1, 1e-5).unwrap_err().to_string();
        assert!(err.contains("channels-last"), "{err}");
        let double = channels_last(&Tensor::ones([2, 8, 4, 4], (Kind::Double, Device::Cpu))).unwrap();
        assert!(train_channels_last(&double, &w, &b, &m, &v, 0.1, 1e-5).is_err());
        let half_weight = w.to_kind(Kind::BFloat16);
        let xs = channels_last(&contiguous).unwrap();
        let err = train_channels_last(&xs, &half_weight, &b, &m, &v, 0.1, 1e-5).unwrap_err().to_string();
        assert!(err.contains("fp32"), "{err}");
    }
}
