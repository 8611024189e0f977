//! Every float parameter of a model with its module path, as values or as our gradients, so
//! that two models of the same configuration can be walked side by side (docs/method.md §12,
//! parity test 11). A parameter that is all NaN counts as having no tensor.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};

/// One parameter's path, shape and values (`None`: no tensor for it).
pub(super) struct Named {
    /// Field names from the root module.
    pub(super) path: Vec<String>,
    pub(super) shape: Vec<usize>,
    pub(super) values: Option<Vec<f32>>,
}

fn tensor_values(data: TensorData) -> Vec<f32> {
    data.convert::<f32>().into_vec::<f32>().unwrap_or_default()
}

/// Every float parameter of `module`, in visit order; all-NaN parameters have no values.
pub(super) fn param_values<B: Backend, M: Module<B>>(module: &M) -> Vec<Named> {
    let mut collector = ValueCollector {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut collector);
    collector.out
}

struct ValueCollector {
    path: Vec<String>,
    out: Vec<Named>,
}

impl<B: Backend> ModuleVisitor<B> for ValueCollector {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let values = tensor_values(param.val().into_data());
        let present = !values.iter().all(|v| v.is_nan());
        self.out.push(Named {
            path: self.path.clone(),
            shape: param.shape().to_vec(),
            values: present.then_some(values),
        });
    }
}

/// Our gradient of every float parameter of `module`, in visit order.
pub(super) fn gradient_values<B: AutodiffBackend, M: Module<B>>(
    module: &M,
    grads: &GradientsParams,
) -> Vec<Named> {
    let mut collector = GradientCollector {
        path: Vec::new(),
        grads,
        out: Vec::new(),
    };
    module.visit(&mut collector);
    collector.out
}

struct GradientCollector<'a> {
    path: Vec<String>,
    grads: &'a GradientsParams,
    out: Vec<Named>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradientCollector<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grad = self.grads.get::<B::InnerBackend, D>(param.id);
        self.out.push(Named {
            path: self.path.clone(),
            shape: param.shape().to_vec(),
            values: grad.map(|g| tensor_values(g.into_data())),
        });
    }
}
