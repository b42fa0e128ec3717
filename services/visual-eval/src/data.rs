//! The two labelled image sets of the evaluation, read as shipped in
//! `../shared/data` (see its README): the MNIST test set in IDX format and
//! scikit-learn's 8×8 digits as CSV, each optionally gzipped.
//!
//! Both become a [`Dataset`] of 8-bit grey images, the raw-pixel form the
//! image encoder takes. The parsers check every length and value and
//! return [`EvalError::Data`] naming the file, never panic: a truncated
//! download must fail the run with a message, not with an index error.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{EvalError, Result};

/// Labelled greyscale images of one size.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The key of this set in the report (`mnist`, `digits`).
    pub name: &'static str,
    pub width: usize,
    pub height: usize,
    /// Row-major 8-bit grey pixels, `width * height` per image, image after
    /// image.
    pub pixels: Vec<u8>,
    /// One digit 0–9 per image.
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let side = self.width * self.height;
        &self.pixels[i * side..(i + 1) * side]
    }

    /// Keeps the first `n` images (for quick runs).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * self.width * self.height);
    }
}

/// The MNIST test set: `dir/t10k-images-idx3-ubyte.gz` and
/// `dir/t10k-labels-idx1-ubyte.gz` (the `.gz` suffix may be absent).
pub fn load_mnist(dir: &Path) -> Result<Dataset> {
    let images_path = existing(dir, "t10k-images-idx3-ubyte");
    let labels_path = existing(dir, "t10k-labels-idx1-ubyte");
    let (rows, cols, pixels) =
        parse_idx_images(&read_file(&images_path)?).map_err(|r| data(&images_path, r))?;
    let labels = parse_idx_labels(&read_file(&labels_path)?).map_err(|r| data(&labels_path, r))?;
    if labels.len() * rows * cols != pixels.len() {
        return Err(data(
            &labels_path,
            format!(
                "{} labels for {} images",
                labels.len(),
                pixels.len() / (rows * cols).max(1)
            ),
        ));
    }
    Ok(Dataset {
        name: "mnist",
        width: cols,
        height: rows,
        pixels,
        labels,
    })
}

/// scikit-learn's digits: `dir/digits.csv.gz` (or `.csv`), 64 pixel
/// columns (0–16) then the label, one image per line.
pub fn load_digits(dir: &Path) -> Result<Dataset> {
    let path = existing(dir, "digits.csv");
    let bytes = read_file(&path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| data(&path, e.to_string()))?;
    let (pixels, labels) = parse_digits_csv(text).map_err(|r| data(&path, r))?;
    Ok(Dataset {
        name: "digits",
        width: 8,
        height: 8,
        pixels,
        labels,
    })
}

fn data(path: &Path, reason: impl Into<String>) -> EvalError {
    EvalError::Data {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// `dir/name.gz`, else `dir/name`; the error names the first.
fn existing(dir: &Path, name: &str) -> PathBuf {
    let gz = dir.join(format!("{name}.gz"));
    let plain = dir.join(name);
    if gz.exists() || !plain.exists() {
        gz
    } else {
        plain
    }
}

/// The file's bytes, gunzipped when they start with the gzip magic.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| EvalError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| data(path, format!("bad gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// An IDX header (LeCun's MNIST format): two zero bytes, the element type
/// (0x08 = unsigned byte, the only one MNIST uses), the number of
/// dimensions, then each dimension as a big-endian u32. Returns the
/// dimensions and the body, which must hold exactly their product.
fn parse_idx(bytes: &[u8], want_dims: usize) -> std::result::Result<(Vec<usize>, &[u8]), String> {
    let header = bytes
        .get(..4)
        .ok_or_else(|| format!("{} bytes: shorter than an IDX header", bytes.len()))?;
    if header[..2] != [0, 0] || header[2] != 0x08 {
        return Err(format!(
            "bad IDX magic {:02x?}: want 00 00 08 (unsigned bytes)",
            header
        ));
    }
    let dims = usize::from(header[3]);
    if dims != want_dims {
        return Err(format!("{dims} dimensions, want {want_dims}"));
    }
    let body_at = 4 + 4 * dims;
    let sizes = bytes
        .get(4..body_at)
        .ok_or("truncated IDX header")?
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect::<Vec<_>>();
    let total = sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or("IDX dimensions overflow")?;
    let body = &bytes[body_at..];
    if body.len() != total {
        return Err(format!(
            "IDX body has {} bytes, dimensions {sizes:?} need {total}",
            body.len()
        ));
    }
    Ok((sizes, body))
}

/// IDX images: `(rows, cols, pixels)`.
fn parse_idx_images(bytes: &[u8]) -> std::result::Result<(usize, usize, Vec<u8>), String> {
    let (dims, body) = parse_idx(bytes, 3)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(format!("empty images {}×{}", dims[1], dims[2]));
    }
    Ok((dims[1], dims[2], body.to_vec()))
}

/// IDX labels, each a digit 0–9.
fn parse_idx_labels(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let (_, body) = parse_idx(bytes, 1)?;
    if let Some((i, l)) = body.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(format!("label {i} is {l}, not a digit"));
    }
    Ok(body.to_vec())
}

/// Pixel columns of a digits row (8×8).
const DIGITS_PIXELS: usize = 64;
/// Largest pixel value in the digits (counts of set pixels in 4×4 blocks).
const DIGITS_MAX: u32 = 16;

/// The digits CSV: `(pixels scaled 0–16 → 0–255, labels)`. A first line
/// that does not start with a number is taken as a header and skipped
/// (the shipped file has none; pandas-written copies do); blank lines are
/// ignored.
fn parse_digits_csv(text: &str) -> std::result::Result<(Vec<u8>, Vec<u8>), String> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let is_header = n == 0
            && line
                .split(',')
                .next()
                .is_some_and(|f| f.trim().parse::<f64>().is_err());
        if is_header {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != DIGITS_PIXELS + 1 {
            return Err(format!(
                "line {}: {} columns, want {}",
                n + 1,
                fields.len(),
                DIGITS_PIXELS + 1
            ));
        }
        let value = |f: &str, max: u32| -> std::result::Result<u32, String> {
            // pandas may write the integers as floats ("16.0").
            let v: f64 = f
                .parse()
                .map_err(|_| format!("line {}: {f:?} is not a number", n + 1))?;
            if v.fract() != 0.0 || !(0.0..=f64::from(max)).contains(&v) {
                return Err(format!(
                    "line {}: {f} is not an integer in 0..={max}",
                    n + 1
                ));
            }
            Ok(v as u32)
        };
        for f in &fields[..DIGITS_PIXELS] {
            let v = value(f, DIGITS_MAX)?;
            // Rounded, so 16 maps to 255 and 8 to 128.
            pixels.push(((v * 255 + DIGITS_MAX / 2) / DIGITS_MAX) as u8);
        }
        labels.push(value(fields[DIGITS_PIXELS], 9)? as u8);
    }
    if labels.is_empty() {
        return Err("no rows".into());
    }
    Ok((pixels, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(kind: u8, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, kind, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(body);
        b
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn idx_images_and_labels_parse() {
        let body: Vec<u8> = (0..2 * 3 * 2).collect();
        let (rows, cols, px) = parse_idx_images(&idx(8, &[2, 3, 2], &body)).unwrap();
        assert_eq!((rows, cols, px), (3, 2, body));
        assert_eq!(
            parse_idx_labels(&idx(8, &[3], &[7, 0, 9])).unwrap(),
            [7, 0, 9]
        );
    }

    #[test]
    fn bad_idx_is_an_error_not_a_panic() {
        let good = idx(8, &[2, 2, 2], &[0; 8]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("short header", vec![0, 0, 8]),
            ("bad magic", idx(9, &[2, 2, 2], &[0; 8])),
            ("nonzero lead", {
                let mut b = good.clone();
                b[0] = 1;
                b
            }),
            ("wrong rank", idx(8, &[8], &[0; 8])),
            ("truncated dims", good[..10].to_vec()),
            ("truncated body", good[..good.len() - 1].to_vec()),
            ("trailing bytes", [good.clone(), vec![0]].concat()),
            ("huge dims", idx(8, &[u32::MAX, u32::MAX, u32::MAX], &[])),
        ];
        for (what, bytes) in cases {
            assert!(parse_idx_images(&bytes).is_err(), "{what}");
        }
        assert!(parse_idx_labels(&idx(8, &[2], &[3, 10])).is_err());
    }

    #[test]
    fn digits_csv_parses_with_or_without_header() {
        let row = |label: u8| {
            let mut f: Vec<String> = (0..64).map(|i| (i % 17).to_string()).collect();
            f.push(label.to_string());
            f.join(",")
        };
        let plain = format!("{}\n{}\n", row(3), row(0));
        let (px, labels) = parse_digits_csv(&plain).unwrap();
        assert_eq!(labels, [3, 0]);
        assert_eq!(px.len(), 128);
        assert_eq!((px[0], px[8], px[16]), (0, 128, 255));
        let header: Vec<String> = (0..64)
            .map(|i| format!("pixel_{i}"))
            .chain(["target".into()])
            .collect();
        let with_header = format!("{}\n{plain}", header.join(","));
        assert_eq!(parse_digits_csv(&with_header).unwrap(), (px, labels));
    }

    #[test]
    fn bad_digits_csv_is_an_error() {
        let mut short: Vec<String> = (0..63).map(|_| "1".to_string()).collect();
        short.push("2".into());
        let good: Vec<String> = (0..65).map(|_| "1".to_string()).collect();
        let mut big = good.clone();
        big[5] = "17".into();
        let mut label = good.clone();
        label[64] = "10".into();
        let mut word = good.clone();
        word[3] = "x".into();
        for (what, text) in [
            ("empty", String::new()),
            ("63 pixels", short.join(",")),
            ("pixel 17", big.join(",")),
            ("label 10", label.join(",")),
            ("a word", format!("{}\n{}", good.join(","), word.join(","))),
        ] {
            assert!(parse_digits_csv(&text).is_err(), "{what}");
        }
    }

    #[test]
    fn loaders_read_gzip_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte.gz"),
            gzip(&idx(8, &[2, 2, 2], &[1; 8])),
        )
        .unwrap();
        // Labels uncompressed: both forms are read.
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx(8, &[2], &[4, 5]),
        )
        .unwrap();
        let set = load_mnist(dir.path()).unwrap();
        assert_eq!((set.len(), set.width, set.height), (2, 2, 2));
        assert_eq!(set.image(1), &[1; 4]);

        // A cut gzip stream is a data error naming the file.
        let cut = gzip(&idx(8, &[2, 2, 2], &[1; 8]));
        let path = dir.path().join("t10k-images-idx3-ubyte.gz");
        std::fs::write(&path, &cut[..cut.len() / 2]).unwrap();
        match load_mnist(dir.path()) {
            Err(EvalError::Data { path: p, .. }) => assert_eq!(p, path),
            other => panic!("want a data error, got {other:?}"),
        }
        // Labels that do not match the images.
        std::fs::write(&path, gzip(&idx(8, &[3, 2, 2], &[1; 12]))).unwrap();
        assert!(matches!(
            load_mnist(dir.path()),
            Err(EvalError::Data { .. })
        ));
        assert!(matches!(
            load_digits(&dir.path().join("absent")),
            Err(EvalError::Io { .. })
        ));
    }
}
