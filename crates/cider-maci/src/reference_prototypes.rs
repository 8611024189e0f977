//! The class prototypes and priors the authors ship in their repository, which their code
//! reads for MACI instead of computing them (docs/method.md §7.2):
//! `{dataset}_feats/{iid|ood}/{task}/{cross}{dataset}_train_{task}_{aligned|unaligned}_{i}.npy`
//! (one `z_i` per class, `[d_l + d_a + d_v]`) and
//! `{dataset}_probs/{iid|ood}/{task}/{cross}{dataset}_train_{task}.npy` (`P(z_i)`, `[C]`), where
//! `{cross}` is `[cross_dataset]` for cross-dataset runs. Only the training files are read:
//! validation and test prototypes follow the run's rule from these.

use std::path::{Path, PathBuf};

use cider_data::dataset::Task;
use cider_data::npy;
use cider_data::synth::Variant;
use cider_model::network_config::Alignment;

use crate::error::MaciError;
use crate::prototypes::Prototypes;

/// Which of the reference's prototype files belong to a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferencePrototypeFiles {
    /// `mosi` or `mosei`.
    pub dataset: String,
    /// `iid` or `ood` training data.
    pub variant: Variant,
    /// `binary` (3 classes) or `seven`.
    pub task: Task,
    /// Aligned or unaligned features.
    pub alignment: Alignment,
    /// Trained for the cross-dataset setting.
    pub cross_dataset: bool,
}

impl ReferencePrototypeFiles {
    fn folder(&self, root: &Path, kind: &str) -> PathBuf {
        let variant = match self.variant {
            Variant::Iid => "iid",
            Variant::Ood => "ood",
        };
        root.join(format!("{}_{kind}", self.dataset))
            .join(variant)
            .join(self.task_name())
    }

    fn task_name(&self) -> &'static str {
        match self.task {
            Task::Binary => "binary",
            Task::Seven => "seven",
        }
    }

    fn prefix(&self) -> String {
        let cross = if self.cross_dataset {
            "[cross_dataset]"
        } else {
            ""
        };
        format!("{cross}{}_train_{}", self.dataset, self.task_name())
    }

    /// The prototype file of class `class` under the repository folder `root`.
    pub fn feature_path(&self, root: &Path, class: usize) -> PathBuf {
        let alignment = match self.alignment {
            Alignment::Aligned => "aligned",
            Alignment::Unaligned => "unaligned",
        };
        self.folder(root, "feats")
            .join(format!("{}_{alignment}_{class}.npy", self.prefix()))
    }

    /// The prior file under the repository folder `root`.
    pub fn prior_path(&self, root: &Path) -> PathBuf {
        self.folder(root, "probs")
            .join(format!("{}.npy", self.prefix()))
    }

    /// Reads the training prototypes and priors under `root` (the reference checkout), each
    /// prototype `[width]` (`d_l + d_a + d_v` of the model) and the priors `[C]`.
    ///
    /// # Errors
    /// [`MaciError::Data`] for a missing or malformed `.npy`; [`MaciError::File`] naming the
    /// file and its shape when an array is not the vector the model needs, or not numbers.
    pub fn read(&self, root: &Path, width: usize) -> Result<Prototypes, MaciError> {
        let classes = self.task.num_classes();
        let vector = |path: PathBuf, expected: usize| -> Result<Vec<f32>, MaciError> {
            let array = npy::from_path(&path)?;
            let shape = array.shape();
            match array.to_f64() {
                Some(values) if shape == [expected] => {
                    Ok(values.into_iter().map(|v| v as f32).collect())
                }
                Some(_) => Err(MaciError::File {
                    file: path.display().to_string(),
                    expected: format!("an array of shape [{expected}]"),
                    found: format!("shape {shape:?}"),
                }),
                None => Err(MaciError::File {
                    file: path.display().to_string(),
                    expected: "a float or integer array".into(),
                    found: format!("{:?} values", array.dtype()),
                }),
            }
        };
        let per_class = (0..classes)
            .map(|class| vector(self.feature_path(root, class), width))
            .collect::<Result<Vec<_>, _>>()?;
        let priors = vector(self.prior_path(root), classes)?;
        Prototypes::new(per_class, priors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cider_data::{ArrayData, NumpyArray};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/reference-maci")
    }

    fn mosi_binary_aligned() -> ReferencePrototypeFiles {
        ReferencePrototypeFiles {
            dataset: "mosi".into(),
            variant: Variant::Iid,
            task: Task::Binary,
            alignment: Alignment::Aligned,
            cross_dataset: false,
        }
    }

    #[test]
    fn paths_follow_the_reference_layout() {
        let files = mosi_binary_aligned();
        assert_eq!(
            files.feature_path(Path::new("repo"), 2),
            Path::new("repo/mosi_feats/iid/binary/mosi_train_binary_aligned_2.npy")
        );
        let cross = ReferencePrototypeFiles {
            cross_dataset: true,
            variant: Variant::Ood,
            task: Task::Seven,
            ..files
        };
        assert_eq!(
            cross.prior_path(Path::new("repo")),
            Path::new("repo/mosi_probs/ood/seven/[cross_dataset]mosi_train_seven.npy")
        );
    }

    #[test]
    fn reads_the_authors_mosi_files() {
        // MOSI: d_l 768 + d_a 5 + d_v 20.
        let prototypes = mosi_binary_aligned().read(&root(), 793).unwrap();
        assert_eq!(prototypes.per_class.len(), 3);
        // Values printed from the files with Python's struct module.
        assert_eq!(prototypes.priors, [0.429_906_55, 0.041_277_26, 0.528_816_2]);
        let z2 = &prototypes.per_class[2];
        assert_eq!(z2[0], -0.011_137_553_501_435_466_f64 as f32);
        assert_eq!(z2[768], 0.156_924_695_725_325_86_f64 as f32);
        let sum: f64 = z2.iter().map(|&v| f64::from(v)).sum();
        assert!((sum - -6.933_022_464_106_676).abs() < 1e-4, "{sum}");
    }

    #[test]
    fn a_model_of_another_width_or_missing_files_are_errors() {
        let err = mosi_binary_aligned()
            .read(&root(), 89)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mosi_train_binary_aligned_0.npy: expected an array of shape [89], found shape [793]"),
            "{err}"
        );
        // A prototype of the right size but saved as a row, `[1, 793]`.
        let dir = tempfile::tempdir().unwrap();
        let files = mosi_binary_aligned();
        for class in 0..3 {
            let path = files.feature_path(dir.path(), class);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let row = NumpyArray::new(vec![1, 793], ArrayData::F32(vec![0.5; 793])).unwrap();
            npy::to_path(&row, &path).unwrap();
        }
        let err = files.read(dir.path(), 793).unwrap_err().to_string();
        assert!(
            err.ends_with("_0.npy: expected an array of shape [793], found shape [1, 793]"),
            "{err}"
        );
        let unaligned = ReferencePrototypeFiles {
            alignment: Alignment::Unaligned,
            ..mosi_binary_aligned()
        };
        let err = unaligned.read(&root(), 793).unwrap_err().to_string();
        assert!(err.contains("mosi_train_binary_unaligned_0.npy"), "{err}");
    }
}
