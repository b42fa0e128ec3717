//! Turning a data set's images into embeddings with the image encoder, on
//! several threads that share one (read-only, `Sync`) encoder and pull
//! small chunks of images from a common counter, so a slow chunk does not
//! leave a thread idle at the end.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use mnemos_vision::{ImageEncoder, ImageInput, PixelFormat, Pixels};

use crate::data::Dataset;
use crate::Result;

/// Images per call of the encoder: small enough to report progress
/// often, large enough that the counter is not contended.
const CHUNK: usize = 16;

/// The embedding of every image of `set`, in order. `progress(done,
/// total)` is called after each chunk, from the worker threads.
pub fn embed_all(
    encoder: &ImageEncoder,
    set: &Dataset,
    threads: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<Vec<f32>>> {
    let total = set.len();
    let chunks = total.div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Vec<Vec<f32>>>>> = Mutex::new(vec![None; chunks]);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let c = next.fetch_add(1, Ordering::Relaxed);
                        if c >= chunks || failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let range = c * CHUNK..((c + 1) * CHUNK).min(total);
                        let inputs: Vec<ImageInput<'_>> = range
                            .clone()
                            .map(|i| {
                                ImageInput::Pixels(Pixels {
                                    width: set.width as u32,
                                    height: set.height as u32,
                                    format: PixelFormat::Gray8,
                                    data: set.image(i),
                                })
                            })
                            .collect();
                        let vectors = encoder.embed(&inputs).inspect_err(|_| {
                            failed.store(true, Ordering::Relaxed);
                        })?;
                        slots.lock().expect("no panics while held")[c] = Some(vectors);
                        let now = done.fetch_add(range.len(), Ordering::Relaxed) + range.len();
                        progress(now, total);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("encoder thread panicked"))
            .collect()
    });
    results.into_iter().collect::<Result<()>>()?;
    Ok(slots
        .into_inner()
        .expect("no panics while held")
        .into_iter()
        .flat_map(|chunk| chunk.expect("every chunk encoded"))
        .collect())
}
