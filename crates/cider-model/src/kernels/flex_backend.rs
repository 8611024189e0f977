//! The fused kernels on Burn's `Flex` backend, and the MCA kernel on `Autodiff<Flex>` too, whose
//! backward runs the hand-written gradient kernel instead of differentiating the composition.
//!
//! The model stays generic over `B: Backend`; these functions recognise `Flex` and
//! `Autodiff<Flex>` by type and hand any other backend's tensor back unchanged, so the caller
//! composes the operation from Burn tensor ops instead. (A backend-extension trait would have
//! to be implemented for every backend a user might pick, and a user cannot implement our trait
//! for another crate's backend; the type check keeps every `Backend` usable.)

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};

use super::gru_kernel::{GruShape, GruWeights, gru_forward};
use super::mca_kernel::{McaShape, mca_backward, mca_forward};

/// A float tensor of `Autodiff<Flex>`.
type AutodiffFlexTensor = FloatTensor<Autodiff<Flex>>;

/// [`mca_forward`] on `Flex` or `Autodiff<Flex>`; `Err(qkv)` on any other backend or dtype.
///
/// # Shapes
/// - qkv: `[B, 3L, 3D]`; returns `[3, B·L, 4D]`
pub fn mca_branches<B: Backend>(
    qkv: Tensor<B, 3>,
    heads: usize,
) -> Result<Tensor<B, 3>, Tensor<B, 3>> {
    let [batch, tokens, width] = qkv.dims();
    let shape = McaShape {
        batch,
        tokens,
        d_model: width / 3,
        heads,
    };
    let out_shape = [3, batch * tokens / 3, 4 * shape.d_model];
    if qkv.dtype() != DType::F32 {
        return Err(qkv);
    }
    if is::<B, Flex>() {
        let input = contiguous(primitive::<B, FlexTensor, 3>(qkv));
        let out = flex_tensor(mca_forward(values(&input), shape), out_shape);
        Ok(tensor::<B, FlexTensor, 3>(out))
    } else if is::<B, Autodiff<Flex>>() {
        let qkv = primitive::<B, AutodiffFlexTensor, 3>(qkv);
        let input = contiguous(qkv.primitive.clone());
        let out = flex_tensor(mca_forward(values(&input), shape), out_shape);
        let out = match McaBackward
            .prepare::<NoCheckpointing>([qkv.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((input, shape), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        Ok(tensor::<B, AutodiffFlexTensor, 3>(out))
    } else {
        Err(qkv)
    }
}

/// The inputs of [`gru_scan`]: projected inputs `[B, T, 3D]`, `W_h` `[D, 3D]`, `b_hn` `[D]`.
pub type GruInputs<B> = (Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 1>);

/// [`gru_forward`] on `Flex` (inference); `Err(inputs)` on any other backend (`Autodiff<Flex>`
/// included: training differentiates the composition) or dtype.
///
/// # Shapes
/// - returns every hidden state, `[B, T, D]`
pub fn gru_scan<B: Backend>(inputs: GruInputs<B>) -> Result<Tensor<B, 3>, GruInputs<B>> {
    let (projected, hidden, bias_hn) = inputs;
    let [batch, steps, _] = projected.dims();
    let shape = GruShape {
        batch,
        steps,
        hidden: bias_hn.dims()[0],
    };
    let out_shape = [batch, steps, shape.hidden];
    let all_f32 = [projected.dtype(), hidden.dtype(), bias_hn.dtype()]
        .iter()
        .all(|&t| t == DType::F32);
    if !all_f32 {
        return Err((projected, hidden, bias_hn));
    }
    if is::<B, Flex>() {
        let projected = contiguous(primitive::<B, FlexTensor, 3>(projected));
        let hidden = contiguous(primitive::<B, FlexTensor, 2>(hidden));
        let bias_hn = contiguous(primitive::<B, FlexTensor, 1>(bias_hn));
        let weights = GruWeights {
            hidden: values(&hidden),
            bias_hn: values(&bias_hn),
        };
        let states = gru_forward(values(&projected), weights, shape);
        Ok(tensor::<B, FlexTensor, 3>(flex_tensor(states, out_shape)))
    } else {
        Err((projected, hidden, bias_hn))
    }
}

/// The backward step of [`mca_branches`] on `Autodiff<Flex>`; its state is the input `qkv`.
#[derive(Debug)]
struct McaBackward;

impl Backward<Flex, 1> for McaBackward {
    type State = (FlexTensor, McaShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        if let Some(parent) = parent {
            let (qkv, shape) = ops.state;
            let dqkv = mca_backward(values(&qkv), values(&grad), shape);
            let dims = [shape.batch, shape.tokens, 3 * shape.d_model];
            grads.register::<Flex>(parent.id, flex_tensor(dqkv, dims));
        }
    }
}

fn is<A: 'static, C: 'static>() -> bool {
    TypeId::of::<A>() == TypeId::of::<C>()
}

/// Moves `value` into type `U`, which the caller has checked with [`is`] to be its own type.
fn cast<T: 'static, U: 'static>(value: T) -> U {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<U>()
        .expect("the backend type was checked before the cast")
}

fn primitive<B: Backend, P: 'static, const D: usize>(t: Tensor<B, D>) -> P {
    cast(t.into_primitive().tensor())
}

fn tensor<B: Backend, P: 'static, const D: usize>(p: P) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(cast::<P, FloatTensor<B>>(p)))
}

/// `t` with a contiguous row-major layout (copied only when it is a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a tensor made by [`contiguous`] from an `f32` tensor.
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("an f32 tensor made contiguous by `contiguous`")
}

fn flex_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}
