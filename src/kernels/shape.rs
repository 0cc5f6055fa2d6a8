//! The shape a 3x3 convolution works on, and what every algorithm does with an output pixel.

/// The shape one convolution works on: `n` images of `h x w` pixels, `cin` channels in,
/// `cout` channels out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
}

impl ConvShape {
    pub fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }
    /// Columns of the patch matrix (rows of the packed kernel).
    pub fn depth(&self) -> usize {
        9 * self.cin
    }
    /// Multiply-adds x 2 of one forward pass.
    pub fn flops(&self) -> f64 {
        2.0 * self.pixels() as f64 * self.depth() as f64 * self.cout as f64
    }
    /// The same pixels with the channel counts swapped (the input-gradient convolution).
    pub(super) fn transposed(&self) -> ConvShape {
        ConvShape {
            cin: self.cout,
            cout: self.cin,
            ..*self
        }
    }
}

/// `px = act(px + bias)` for one output pixel's channels.
pub(super) fn bias_relu(px: &mut [f32], bias: Option<&[f32]>, relu: bool) {
    if let Some(b) = bias {
        px.iter_mut().zip(b).for_each(|(v, b)| *v += b);
    }
    if relu {
        px.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// Checks a Winograd forward's operands against the shape (a mismatch is a bug in the caller).
pub(super) fn check_winograd_operands(x: &[f32], s: ConvShape, u: &[f32], planes: usize) {
    assert_eq!(
        x.len(),
        s.pixels() * s.cin,
        "conv input does not match its shape"
    );
    assert_eq!(
        u.len(),
        planes * s.cin * s.cout,
        "winograd kernel does not match its shape"
    );
}
