//! The fused kernels on Burn's `Flex` backend and on `Autodiff<Flex>`, where each is one autodiff
//! node whose backward runs the hand-written gradient kernel instead of differentiating the
//! composition.
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
use burn::tensor::{DType, Distribution, Int, Tensor, TensorData, TensorMetadata, TensorPrimitive};

use super::AttentionTensors;
use super::dropout_kernel::DropoutMask;
use super::gru_kernel::{GruShape, GruWeights, gru_backward, gru_forward};
use super::kl_kernel;
use super::mca_kernel::{McaShape, mca_backward, mca_forward};
use super::wsam_kernel::{
    AttentionInputs, AttentionShape, masked_attention as masked_attention_forward,
    masked_attention_backward,
};

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

/// [`gru_forward`] on `Flex` or `Autodiff<Flex>` (whose backward runs [`gru_backward`]);
/// `Err(inputs)` on any other backend or dtype.
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
    let all_f32 = [projected.dtype(), hidden.dtype(), bias_hn.dtype()]
        .iter()
        .all(|&t| t == DType::F32);
    if !all_f32 {
        return Err((projected, hidden, bias_hn));
    }
    if is::<B, Flex>() {
        let inputs = GruState::new(
            primitive::<B, FlexTensor, 3>(projected),
            primitive::<B, FlexTensor, 2>(hidden),
            primitive::<B, FlexTensor, 1>(bias_hn),
            shape,
        );
        Ok(tensor::<B, FlexTensor, 3>(inputs.states))
    } else if is::<B, Autodiff<Flex>>() {
        let projected = primitive::<B, AutodiffFlexTensor, 3>(projected);
        let hidden = primitive::<B, AutodiffFlexTensor, 2>(hidden);
        let bias_hn = primitive::<B, AutodiffFlexTensor, 1>(bias_hn);
        let nodes = [
            projected.node.clone(),
            hidden.node.clone(),
            bias_hn.node.clone(),
        ];
        let state = GruState::new(
            projected.primitive,
            hidden.primitive,
            bias_hn.primitive,
            shape,
        );
        let states = state.states.clone();
        let out = match GruBackward
            .prepare::<NoCheckpointing>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, states),
            OpsKind::UnTracked(prep) => prep.finish(states),
        };
        Ok(tensor::<B, AutodiffFlexTensor, 3>(out))
    } else {
        Err((projected, hidden, bias_hn))
    }
}

/// [`kl_kernel::attention_kl`] on `Flex` or `Autodiff<Flex>` (for a tracked student the
/// gradient is computed with the loss and kept for the backward, otherwise only the loss);
/// `Err(inputs)` on any other backend or dtype. The teacher must come detached.
///
/// # Shapes
/// - student, teacher: `[R, rows, cols]`; returns `[1]`
pub fn attention_kl<B: Backend>(
    student: Tensor<B, 3>,
    teacher: Tensor<B, 3>,
) -> Result<Tensor<B, 1>, (Tensor<B, 3>, Tensor<B, 3>)> {
    let dims = student.dims();
    let [slices, _, cols] = dims;
    let usable =
        dims == teacher.dims() && student.dtype() == DType::F32 && teacher.dtype() == DType::F32;
    if !usable {
        return Err((student, teacher));
    }
    if is::<B, Flex>() {
        let student = contiguous(primitive::<B, FlexTensor, 3>(student));
        let teacher = contiguous(primitive::<B, FlexTensor, 3>(teacher));
        let loss = kl_kernel::attention_kl_loss(values(&student), values(&teacher), slices, cols);
        Ok(tensor::<B, FlexTensor, 1>(flex_tensor(
            vec![loss as f32],
            [1],
        )))
    } else if is::<B, Autodiff<Flex>>() {
        let student = primitive::<B, AutodiffFlexTensor, 3>(student);
        let teacher = contiguous(primitive::<B, AutodiffFlexTensor, 3>(teacher).primitive);
        let inner = contiguous(student.primitive);
        let (s_m, s) = (values(&inner), values(&teacher));
        let out = match KlBackward
            .prepare::<NoCheckpointing>([student.node])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let kl = kl_kernel::attention_kl(s_m, s, slices, cols);
                let loss = flex_tensor(vec![kl.loss as f32], [1]);
                prep.finish(flex_tensor(kl.grad, dims), loss)
            }
            OpsKind::UnTracked(prep) => {
                let loss = kl_kernel::attention_kl_loss(s_m, s, slices, cols);
                prep.finish(flex_tensor(vec![loss as f32], [1]))
            }
        };
        Ok(tensor::<B, AutodiffFlexTensor, 1>(out))
    } else {
        Err((student, teacher))
    }
}

/// The WSAM's masked attention through [`masked_attention_forward`] on `Flex` or
/// `Autodiff<Flex>` (whose backward runs [`masked_attention_backward`] for `q`, `k` and `v`;
/// the bias and the row factor are constants); `Err(inputs)` on any other backend or dtype, or
/// without keys.
///
/// # Shapes
/// - returns `[B, T_l, D]`
pub fn masked_attention<B: Backend>(
    inputs: AttentionTensors<B>,
) -> Result<Tensor<B, 3>, AttentionTensors<B>> {
    let [batch, queries, width] = inputs.q.dims();
    let keys = inputs.k.dims()[1];
    let shape = AttentionShape {
        batch,
        queries,
        keys,
        width,
    };
    let usable = [
        &inputs.q,
        &inputs.k,
        &inputs.v,
        &inputs.column_bias,
        &inputs.rows,
    ]
    .iter()
    .all(|t| t.dtype() == DType::F32)
        && keys > 0
        && width > 0;
    if !usable || !(is::<B, Flex>() || is::<B, Autodiff<Flex>>()) {
        return Err(inputs);
    }
    let AttentionTensors {
        q,
        k,
        v,
        column_bias,
        rows,
    } = inputs;
    let dims = [batch, queries, width];
    if is::<B, Flex>() {
        let state = AttentionState::new(
            [q, k, v, column_bias, rows].map(|t| primitive::<B, FlexTensor, 3>(t)),
            shape,
        );
        let out = masked_attention_forward(state.inputs());
        return Ok(tensor::<B, FlexTensor, 3>(flex_tensor(out, dims)));
    }
    let [q, k, v] = [q, k, v].map(|t| primitive::<B, AutodiffFlexTensor, 3>(t));
    let [column_bias, rows] =
        [column_bias, rows].map(|t| primitive::<B, AutodiffFlexTensor, 3>(t).primitive);
    let nodes = [q.node.clone(), k.node.clone(), v.node.clone()];
    let state = AttentionState::new(
        [q.primitive, k.primitive, v.primitive, column_bias, rows],
        shape,
    );
    let out = flex_tensor(masked_attention_forward(state.inputs()), dims);
    let out = match AttentionBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Ok(tensor::<B, AutodiffFlexTensor, 3>(out))
}

/// The contiguous inputs of one [`masked_attention`] call: `[q, k, v, column bias, rows]`.
#[derive(Clone, Debug)]
struct AttentionState {
    tensors: [FlexTensor; 5],
    shape: AttentionShape,
}

impl AttentionState {
    fn new(tensors: [FlexTensor; 5], shape: AttentionShape) -> Self {
        AttentionState {
            tensors: tensors.map(contiguous),
            shape,
        }
    }

    fn inputs(&self) -> AttentionInputs<'_> {
        let [q, k, v, column_bias, rows] = self.tensors.each_ref().map(values);
        AttentionInputs {
            q,
            k,
            v,
            column_bias,
            rows,
            shape: self.shape,
        }
    }
}

/// Dropout with probability `prob` through [`DropoutMask`] on `Autodiff<Flex>`, its key drawn
/// from `Flex`'s generator (so a seeded run repeats its masks); `Err(x)` on any other backend or
/// dtype.
///
/// # Shapes
/// - x: any; returns the same
pub fn dropout<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    prob: f64,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    if !is::<B, Autodiff<Flex>>() || x.dtype() != DType::F32 {
        return Err(x);
    }
    let dims = x.dims();
    let mask = DropoutMask::new(dropout_key(), prob);
    let x = primitive::<B, AutodiffFlexTensor, D>(x);
    let input = contiguous(x.primitive);
    let out = flex_tensor(mask.apply(values(&input)), dims);
    let out = match DropoutBackward
        .prepare::<NoCheckpointing>([x.node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(mask, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    Ok(tensor::<B, AutodiffFlexTensor, D>(out))
}

/// A 64-bit key from four 16-bit draws of `Flex`'s generator.
fn dropout_key() -> u64 {
    let draws = Tensor::<Flex, 1, Int>::random(
        [4],
        Distribution::Uniform(0.0, 65_536.0),
        &Default::default(),
    );
    draws
        .into_data()
        .iter::<i64>()
        .fold(0u64, |key, d| (key << 16) | (d as u64 & 0xffff))
}

/// A GRU call's contiguous inputs and the states [`gru_forward`] computed from them: the
/// state its backward needs.
#[derive(Clone, Debug)]
struct GruState {
    projected: FlexTensor,
    hidden: FlexTensor,
    bias_hn: FlexTensor,
    states: FlexTensor,
    shape: GruShape,
}

impl GruState {
    /// Runs the forward kernel on `projected` `[B, T, 3D]`, `W_h` `[D, 3D]`, `b_hn` `[D]`.
    fn new(
        projected: FlexTensor,
        hidden: FlexTensor,
        bias_hn: FlexTensor,
        shape: GruShape,
    ) -> Self {
        let (projected, hidden, bias_hn) = (
            contiguous(projected),
            contiguous(hidden),
            contiguous(bias_hn),
        );
        let states = gru_forward(values(&projected), Self::weights(&hidden, &bias_hn), shape);
        let states = flex_tensor(states, [shape.batch, shape.steps, shape.hidden]);
        GruState {
            projected,
            hidden,
            bias_hn,
            states,
            shape,
        }
    }

    fn weights<'a>(hidden: &'a FlexTensor, bias_hn: &'a FlexTensor) -> GruWeights<'a> {
        GruWeights {
            hidden: values(hidden),
            bias_hn: values(bias_hn),
        }
    }
}

/// The backward step of [`gru_scan`] on `Autodiff<Flex>`.
#[derive(Debug)]
struct GruBackward;

impl Backward<Flex, 3> for GruBackward {
    type State = GruState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let state = ops.state;
        let weights = GruState::weights(&state.hidden, &state.bias_hn);
        let shape = state.shape;
        let d = shape.hidden;
        let gradients = gru_backward(
            values(&state.projected),
            values(&state.states),
            values(&grad),
            weights,
            shape,
        );
        let [projected, hidden, bias_hn] = ops.parents;
        if let Some(parent) = projected {
            let dims = [shape.batch, shape.steps, 3 * d];
            grads.register::<Flex>(parent.id, flex_tensor(gradients.projected, dims));
        }
        if let Some(parent) = hidden {
            grads.register::<Flex>(parent.id, flex_tensor(gradients.hidden, [d, 3 * d]));
        }
        if let Some(parent) = bias_hn {
            grads.register::<Flex>(parent.id, flex_tensor(gradients.bias_hn, [d]));
        }
    }
}

/// The backward step of [`attention_kl`] on `Autodiff<Flex>`; its state is `∂KL/∂student`.
#[derive(Debug)]
struct KlBackward;

impl Backward<Flex, 1> for KlBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let upstream = contiguous(grads.consume::<Flex>(&ops.node)); // [1]
        if let Some(parent) = parent {
            let scale = values(&upstream)[0];
            let mut grad = ops.state;
            grad.storage_mut::<f32>()
                .iter_mut()
                .for_each(|g| *g *= scale);
            grads.register::<Flex>(parent.id, grad);
        }
    }
}

/// The backward step of [`masked_attention`] on `Autodiff<Flex>`; its state is the inputs.
#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = AttentionState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q, k, v] = ops.parents;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let state = ops.state;
        let out = masked_attention_backward(state.inputs(), values(&grad));
        let AttentionShape {
            batch,
            queries: t_l,
            keys: t_x,
            width: d,
        } = state.shape;
        let parts = [(q, out.q, t_l), (k, out.k, t_x), (v, out.v, t_x)];
        for (parent, values, rows) in parts {
            if let Some(parent) = parent {
                grads.register::<Flex>(parent.id, flex_tensor(values, [batch, rows, d]));
            }
        }
    }
}

/// The backward step of [`dropout`] on `Autodiff<Flex>`: the upstream gradient through the
/// same mask, regenerated from its key.
#[derive(Debug)]
struct DropoutBackward;

impl Backward<Flex, 1> for DropoutBackward {
    type State = DropoutMask;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let upstream = contiguous(grads.consume::<Flex>(&ops.node));
        if let Some(parent) = parent {
            let grad = ops.state.apply(values(&upstream));
            let grad = FlexTensor::from_data(TensorData::new(grad, upstream.shape()));
            grads.register::<Flex>(parent.id, grad);
        }
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
