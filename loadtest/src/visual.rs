//! Bodies of `POST /v1/visual/classify` requests, prepared before the run
//! like search bodies: every image of a folder base64-encoded once, or a
//! fixed set of random unit vectors.

use std::path::Path;

use base64::Engine as _;
use bytes::Bytes;
use mnemos_api::ClassifyRequest;
use rand::{Rng, SeedableRng};

use crate::error::{LoadError, Result};
use crate::scenario::ClassifyInput;

/// Random query vectors per embedding request type: enough that the
/// server cannot cache one answer, few enough to prepare at once.
const VECTORS: usize = 256;
/// Largest image file sent; the gateway's default body limit is 16 MiB.
const MAX_IMAGE_BYTES: u64 = 8 << 20;

/// One JSON body per image (sorted by file name) or per random vector.
pub fn classify_bodies(
    name: &str,
    input: &ClassifyInput,
    k: Option<usize>,
    aggregation: Option<&str>,
) -> Result<Vec<Bytes>> {
    let body = |image: Option<String>, embedding: Option<Vec<f32>>| {
        let req = ClassifyRequest {
            image,
            embedding,
            k,
            aggregation: aggregation.map(str::to_owned),
            ef: None,
        };
        serde_json::to_vec(&req)
            .map(Bytes::from)
            .map_err(|e| LoadError::Config(format!("`{name}`: cannot encode a classify: {e}")))
    };
    match input {
        ClassifyInput::Images(dir) => images(name, dir)?
            .into_iter()
            .map(|bytes| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                body(Some(b64), None)
            })
            .collect(),
        ClassifyInput::Embeddings { dim } => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(*dim as u64);
            (0..VECTORS)
                .map(|_| body(None, Some(unit_vector(&mut rng, *dim))))
                .collect()
        }
    }
}

/// The PNG and JPEG files directly in `dir`, in name order.
fn images(name: &str, dir: &Path) -> Result<Vec<Vec<u8>>> {
    let err = |m: String| LoadError::Config(format!("`{name}`: {m}"));
    let entries = std::fs::read_dir(dir)
        .map_err(|e| err(format!("cannot list images in {}: {e}", dir.display())))?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| ["png", "jpg", "jpeg"].contains(&x.to_ascii_lowercase().as_str()))
        })
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(err(format!(
            "no .png/.jpg/.jpeg files in {}",
            dir.display()
        )));
    }
    paths
        .iter()
        .map(|p| {
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            if size > MAX_IMAGE_BYTES {
                return Err(err(format!(
                    "{} is larger than {} MiB",
                    p.display(),
                    MAX_IMAGE_BYTES >> 20
                )));
            }
            std::fs::read(p).map_err(|e| err(format!("cannot read {}: {e}", p.display())))
        })
        .collect()
}

/// A direction drawn uniformly: normalised Gaussian components.
fn unit_vector(rng: &mut impl Rng, dim: usize) -> Vec<f32> {
    loop {
        // Box–Muller from two uniforms: rand's normal distribution lives in
        // another crate.
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            return v.into_iter().map(|x| x / norm).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_folder_becomes_one_body_per_image() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.png"), b"\x89PNG fake").unwrap();
        std::fs::write(dir.path().join("a.JPG"), b"jpeg bytes").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"skip me").unwrap();
        let input = ClassifyInput::Images(dir.path().to_path_buf());
        let bodies = classify_bodies("c", &input, Some(3), Some("plurality")).unwrap();
        assert_eq!(bodies.len(), 2);
        let first: serde_json::Value = serde_json::from_slice(&bodies[0]).unwrap();
        let image = base64::engine::general_purpose::STANDARD
            .decode(first["image"].as_str().unwrap())
            .unwrap();
        assert_eq!(image, b"jpeg bytes");
        assert_eq!(
            (first["k"].as_u64(), first["aggregation"].as_str()),
            (Some(3), Some("plurality"))
        );

        let empty = tempfile::tempdir().unwrap();
        let err = classify_bodies("c", &ClassifyInput::Images(empty.path().into()), None, None);
        assert!(err.unwrap_err().to_string().contains("no .png"));
    }

    #[test]
    fn embeddings_are_unit_vectors_of_the_dimension() {
        let bodies =
            classify_bodies("c", &ClassifyInput::Embeddings { dim: 16 }, None, None).unwrap();
        assert_eq!(bodies.len(), VECTORS);
        for b in &bodies[..5] {
            let v: serde_json::Value = serde_json::from_slice(b).unwrap();
            let e: Vec<f32> = serde_json::from_value(v["embedding"].clone()).unwrap();
            assert_eq!(e.len(), 16);
            let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4);
            assert!(v.get("image").is_none_or(|i| i.is_null()));
        }
    }
}
