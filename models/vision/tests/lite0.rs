//! Integration tests of the EfficientNet-Lite0 encoder against the real
//! weights.
//!
//! Tests that need the model skip (with a message) when it is not
//! installed; see `support::model_dir`.

mod support;

use std::path::Path;

use mnemos_vision::{
    export_safetensors, BlockSpec, EncoderOptions, ImageEncoder, ImageInput, ModelError,
    PixelFormat, Pixels,
};
use serde::Deserialize;

/// `tests/fixtures/lite0_reference.json`, written by
/// `tests/fixtures/make_reference.py` (an independent float64 PyTorch
/// implementation that preprocesses the drawn arrays, not the PNGs).
#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    top5: Vec<usize>,
    embedding: Vec<f32>,
}

fn fixture() -> Fixture {
    serde_json::from_slice(&support::fixture("lite0_reference.json"))
        .expect("fixture is valid JSON")
}

fn load(dir: &Path) -> ImageEncoder {
    ImageEncoder::load(dir, EncoderOptions::default()).expect("model loads")
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// EfficientNet-B0's stages (Tan & Le 2019, Table 1) without SE:
/// (expansion, kernel, stride of the first block, output, repeats).
const LITE0_STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];

#[test]
fn architecture_found_in_the_weights_is_lite0() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = load(&dir);
    assert_eq!(encoder.dim(), 1280);
    assert_eq!(encoder.num_classes(), 1000);
    assert_eq!(encoder.input_size(), 224);

    let mut expected = Vec::new();
    let mut input = 32;
    for (expand, kernel, stride, output, repeats) in LITE0_STAGES {
        for r in 0..repeats {
            let stride = if r == 0 { stride } else { 1 };
            expected.push(BlockSpec {
                input,
                expanded: input * expand,
                output,
                kernel,
                stride,
                residual: stride == 1 && input == output,
            });
            input = output;
        }
    }
    assert_eq!(encoder.blocks(), expected);
}

#[test]
fn matches_independent_reference() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = load(&dir);
    let fixture = fixture();
    let images: Vec<Vec<u8>> = fixture
        .cases
        .iter()
        .map(|c| support::fixture(&c.file))
        .collect();
    let inputs: Vec<ImageInput<'_>> = images.iter().map(|b| ImageInput::Encoded(b)).collect();
    let outputs = encoder.infer(&inputs).expect("infer");
    for (case, out) in fixture.cases.iter().zip(&outputs) {
        let cos = cosine(&out.embedding, &case.embedding);
        let top5: Vec<usize> = out.top_k(5).iter().map(|t| t.0).collect();
        eprintln!(
            "{:18} cosine {cos:.6}  top5 {top5:?}  reference {:?}",
            case.file, case.top5
        );
        assert!(cos >= 0.999, "{}: cosine {cos}", case.file);
        assert_eq!(top5[0], case.top5[0], "{}: top-1 differs", case.file);
        let mut ours = top5.clone();
        let mut theirs = case.top5.clone();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(ours, theirs, "{}: top-5 classes differ", case.file);
        let norm = out.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

/// The pretrained ImageNet head on drawn patterns it should know (no
/// third-party images here): ImageNet-1k has classes for honeycombs (599),
/// window screens (904), mazes (646) and coils/spirals (506), and the
/// drawings are classified so with 0.7–0.85 probability. Not a benchmark:
/// it catches gross errors (wrong weight layout or class order) that would
/// turn these into noise; the subtler ones
/// (padding, normalisation, BatchNorm epsilon) are for
/// `matches_independent_reference`, which fails on each of them.
#[test]
fn pretrained_head_recognises_drawn_patterns() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = load(&dir);
    let expect: [(&str, &[usize]); 3] = [
        ("honeycomb.png", &[599]),
        ("window_screen.png", &[904]),
        ("spiral.png", &[646, 506]),
    ];
    for (file, classes) in expect {
        let bytes = support::fixture(file);
        let out = encoder
            .infer(&[ImageInput::Encoded(&bytes)])
            .expect("infer");
        let top = out[0].top_k(3);
        eprintln!("{file:18} top3 {top:?}");
        assert!(
            classes.contains(&top[0].0),
            "{file}: top-1 {top:?}, expected one of {classes:?}"
        );
        assert!(top[0].1 > 0.5, "{file}: only {:.2} confident", top[0].1);
    }
}

#[test]
fn batching_does_not_change_embeddings() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    // max_batch 3 splits the 5 images into two forward passes.
    let opts = EncoderOptions {
        max_batch: 3,
        ..EncoderOptions::default()
    };
    let encoder = ImageEncoder::load(&dir, opts).expect("model loads");
    let images = support::images();
    let mut inputs: Vec<ImageInput<'_>> =
        images.iter().map(|(_, b)| ImageInput::Encoded(b)).collect();
    inputs.push(inputs[1]);
    let batched = encoder.embed(&inputs).expect("batched");
    assert_eq!(batched.len(), 5);
    for (input, vector) in inputs.iter().zip(&batched) {
        let single = encoder.embed(std::slice::from_ref(input)).expect("single");
        let diff = max_abs_diff(vector, &single[0]);
        assert!(diff < 1e-5, "max abs diff {diff}");
    }
    assert_eq!(batched[1], batched[4]);
    assert!(encoder.embed(&[]).expect("empty").is_empty());
    // Different images are far apart, the same one is identical.
    assert!(cosine(&batched[0], &batched[1]) < 0.9);
}

#[test]
fn raw_digits_encode_like_their_png() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = load(&dir);
    // A 28×28 "1"-like stroke, as an MNIST digit would arrive.
    let mut digit = vec![0u8; 28 * 28];
    for y in 4..24 {
        for x in 12..16 {
            digit[y * 28 + x] = 255;
        }
    }
    let raw = ImageInput::Pixels(Pixels {
        width: 28,
        height: 28,
        format: PixelFormat::Gray8,
        data: &digit,
    });
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&digit, 28, 28, image::ExtendedColorType::L8)
        .expect("encode");
    let vectors = encoder
        .embed(&[raw, ImageInput::Encoded(&png)])
        .expect("embed");
    assert_eq!(vectors[0], vectors[1]);
    assert_eq!(vectors[0].len(), 1280);
    assert!(vectors[0].iter().all(|x| x.is_finite()));
}

use image::ImageEncoder as _;

#[test]
fn bad_images_are_invalid_input_naming_the_image() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = load(&dir);
    let good = support::fixture("blobs.png");
    let cases: [(&str, ImageInput<'_>); 3] = [
        ("garbage", ImageInput::Encoded(b"GIF89a, or rather not")),
        ("truncated", ImageInput::Encoded(&good[..good.len() / 2])),
        (
            "zero-size",
            ImageInput::Pixels(Pixels {
                width: 0,
                height: 5,
                format: PixelFormat::Gray8,
                data: &[],
            }),
        ),
    ];
    for (what, bad) in cases {
        let err = encoder
            .embed(&[ImageInput::Encoded(&good), bad])
            .expect_err(what);
        assert!(
            matches!(&err, ModelError::InvalidInput(m) if m.starts_with("image 1:")),
            "{what}: {err}"
        );
        assert!(encoder.preprocess(&bad).is_err(), "{what}");
    }
}

#[test]
fn safetensors_export_loads_identically() {
    let Some(dir) = support::model_dir() else {
        return;
    };
    let encoder = load(&dir);
    let out = tempfile::tempdir().expect("temp dir");
    let pth = std::fs::read_dir(&dir)
        .expect("model dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "pth"))
        .expect("a .pth file");
    // No config.json: the defaults are Lite0's.
    export_safetensors(&pth, &out.path().join("model.safetensors")).expect("export");
    let from_safetensors = load(out.path());
    let image = support::fixture("honeycomb.png");
    let input = [ImageInput::Encoded(&image)];
    assert_eq!(
        encoder.infer(&input).expect("pth"),
        from_safetensors.infer(&input).expect("safetensors")
    );
}

#[test]
fn missing_and_broken_files_are_errors() {
    let err = ImageEncoder::load(Path::new("/no/such/model"), EncoderOptions::default())
        .err()
        .expect("load fails");
    assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("install-models.sh"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let err = ImageEncoder::load(dir.path(), EncoderOptions::default())
        .err()
        .expect("empty dir");
    assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");

    std::fs::write(dir.path().join("model.safetensors"), b"garbage").expect("write");
    let err = ImageEncoder::load(dir.path(), EncoderOptions::default())
        .err()
        .expect("garbage");
    assert!(matches!(err, ModelError::Config { .. }), "{err}");

    std::fs::write(dir.path().join("config.json"), r#"{"padding": "valid"}"#).expect("write");
    let err = ImageEncoder::load(dir.path(), EncoderOptions::default())
        .err()
        .expect("bad config");
    assert!(
        matches!(&err, ModelError::Config { path, .. } if path.ends_with("config.json")),
        "{err}"
    );

    let Some(real) = support::model_dir() else {
        return;
    };
    // Real weights with a config describing another stage layout.
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&real)
        .expect("model dir")
        .filter_map(|e| e.ok())
    {
        if entry.path().extension().is_some_and(|e| e == "pth") {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy");
        }
    }
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"stage_strides": [1, 2, 2]}"#,
    )
    .expect("write");
    let err = ImageEncoder::load(dir.path(), EncoderOptions::default())
        .err()
        .expect("strides");
    assert!(matches!(err, ModelError::Config { .. }), "{err}");

    let opts = EncoderOptions {
        max_batch: 0,
        ..EncoderOptions::default()
    };
    let err = ImageEncoder::load(&real, opts).err().expect("max_batch 0");
    assert!(matches!(err, ModelError::InvalidInput(_)), "{err}");
}
