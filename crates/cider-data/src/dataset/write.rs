//! Writing a dataset back in the MMSA layout (docs/method.md §2.2): the Python dict that
//! `pickle_write` turns into a file the reference reads.

use super::{Dataset, Dims, Split};
use crate::error::DataError;
use crate::value::{ArrayData, NumpyArray, PyValue};

impl Dataset {
    /// The dataset as an MMSA-layout Python dict, ready for `pickle_write` (docs/method.md §2.2): `text_bert`
    /// float64 `[N, 3, T_l]`, `audio`/`vision` float32, `audio_lengths`/`vision_lengths` (unaligned
    /// only), `regression_labels` float32, `classification_labels` float64, `raw_text`, `id`, and
    /// `text` when present.
    pub fn to_pyvalue(&self) -> Result<PyValue, DataError> {
        let mut top = Vec::with_capacity(3);
        for split in self.splits() {
            top.push((
                PyValue::Str(split.name.clone()),
                split_to_pyvalue(split, self.aligned)?,
            ));
        }
        Ok(PyValue::Dict(top))
    }
}

fn split_to_pyvalue(split: &Split, aligned: bool) -> Result<PyValue, DataError> {
    let Dims {
        d_l,
        t_l,
        t_a,
        t_v,
        d_a,
        d_v,
    } = split.dims;
    let n = split.n;
    let mut text_bert = Vec::with_capacity(n * 3 * t_l);
    for i in 0..n {
        let row = i * t_l..(i + 1) * t_l;
        text_bert.extend(split.text_ids[row.clone()].iter().map(|&x| f64::from(x)));
        text_bert.extend(split.text_mask[row.clone()].iter().map(|&x| f64::from(x)));
        text_bert.extend(split.text_segment[row].iter().map(|&x| f64::from(x)));
    }
    let array =
        |shape: Vec<usize>, data: ArrayData| NumpyArray::new(shape, data).map(PyValue::Array);
    let strings = |v: &[String]| {
        array(
            vec![v.len()],
            ArrayData::Object(v.iter().cloned().map(PyValue::Str).collect()),
        )
    };
    let key = |k: &str| PyValue::Str(k.to_string());
    let mut items = vec![
        (key("raw_text"), strings(&split.raw_text)?),
        (key("id"), strings(&split.id)?),
        (
            key("audio"),
            array(vec![n, t_a, d_a], ArrayData::F32(split.audio.clone()))?,
        ),
        (
            key("vision"),
            array(vec![n, t_v, d_v], ArrayData::F32(split.vision.clone()))?,
        ),
        (
            key("text_bert"),
            array(vec![n, 3, t_l], ArrayData::F64(text_bert))?,
        ),
        (
            key("regression_labels"),
            array(vec![n], ArrayData::F32(split.score.clone()))?,
        ),
        (
            key("classification_labels"),
            array(
                vec![n],
                ArrayData::F64(split.label3.iter().map(|&l| f64::from(l)).collect()),
            )?,
        ),
    ];
    if !aligned {
        let ints = |v: &[usize]| ArrayData::I64(v.iter().map(|&x| x as i64).collect());
        items.push((
            key("audio_lengths"),
            array(vec![n], ints(&split.audio_len))?,
        ));
        items.push((
            key("vision_lengths"),
            array(vec![n], ints(&split.vision_len))?,
        ));
    }
    if let Some(text) = &split.text_features {
        items.push((
            key("text"),
            array(vec![n, t_l, d_l], ArrayData::F32(text.clone()))?,
        ));
    }
    Ok(PyValue::Dict(items))
}

#[cfg(test)]
mod tests {
    use crate::dataset::Dataset;
    use crate::dataset::testkit::{aligned_split, file};

    #[test]
    fn a_pickled_dataset_round_trips_through_the_python_layout() {
        let data = Dataset::from_pyvalue(file(aligned_split([2.0, -0.4])), "t.pkl").unwrap();
        let again = Dataset::from_pyvalue(data.to_pyvalue().unwrap(), "t.pkl").unwrap();
        assert_eq!(again.train, data.train);
    }
}
