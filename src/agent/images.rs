//! Pictures and PDFs people send, given to the model as input as well as by path: which files
//! qualify (PNG, JPEG, GIF and WebP; PDF, which both protocols read as documents), the sizes
//! both accept as base64, and reading them when a request is built (history keeps only the
//! path).

use std::path::Path;

use base64::Engine;
use serde_json::Value;

use super::model::Block;
use crate::db::inbound::InboundRow;

/// Largest picture given to the model: its base64 stays under the 5 MB both protocols accept.
pub const IMAGE_BYTES_MAX: u64 = 3_750_000;
/// Pictures per batch of messages.
pub const IMAGES_PER_BATCH_MAX: usize = 8;
/// Largest PDF given to the model (its base64 stays well under the 32 MB a request may carry).
pub const PDF_BYTES_MAX: u64 = 10_000_000;

/// The image type of a file name, for the types models accept.
pub fn media_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "gif" => Some("image/gif"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// The pictures that `rows` carry as image blocks (paths resolved under `workspace`, which is
/// `/workspace` in a container), and a note for each picture the model cannot be shown.
pub fn blocks(workspace: &Path, rows: &[InboundRow]) -> (Vec<Block>, Vec<String>) {
    let mut images = Vec::new();
    let mut notes = Vec::new();
    for row in rows.iter().filter(|r| r.kind == "chat") {
        let Ok(content) = serde_json::from_str::<Value>(&row.content) else { continue };
        for f in content.get("files").and_then(Value::as_array).into_iter().flatten() {
            let (Some(name), Some(shown_path)) =
                (f.get("name").and_then(Value::as_str), f.get("path").and_then(Value::as_str))
            else {
                continue;
            };
            // A picture too large for the model comes with a copy made for it (the host scaled
            // it down): the model sees that, the agent's tools the original.
            let path = f.get("model_path").and_then(Value::as_str).unwrap_or(shown_path);
            let pdf = path.to_ascii_lowercase().ends_with(".pdf");
            let media = media_type(path);
            if media.is_none() && !pdf {
                continue;
            }
            let Some(rel) = path.strip_prefix("/workspace/").filter(|r| !r.split('/').any(|c| c == ".."))
            else {
                continue;
            };
            let real = workspace.join(rel);
            let size = std::fs::metadata(&real).map(|m| m.len()).unwrap_or(0);
            if size == 0 {
                continue;
            }
            if pdf {
                if size > PDF_BYTES_MAX {
                    notes.push(format!(
                        "[The PDF {name} is {:.1} MB, too large to read whole here (the limit is {} MB); it is at {shown_path}.]",
                        size as f64 / 1e6,
                        PDF_BYTES_MAX / 1_000_000
                    ));
                } else {
                    images.push(Block::Pdf {
                        path: real.to_string_lossy().into_owned(),
                        name: name.to_string(),
                    });
                }
                continue;
            }
            let Some(media) = media else { continue };
            if size > IMAGE_BYTES_MAX {
                notes.push(format!(
                    "[The picture {name} is {:.1} MB, too large to look at (the limit is {:.2} MB); it is still at {shown_path}.]",
                    size as f64 / 1e6,
                    IMAGE_BYTES_MAX as f64 / 1e6
                ));
                continue;
            }
            if images.len() == IMAGES_PER_BATCH_MAX {
                notes.push(format!(
                    "[More than {IMAGES_PER_BATCH_MAX} pictures: {name} is only at {shown_path}.]"
                ));
                continue;
            }
            images.push(Block::Image { path: real.to_string_lossy().into_owned(), media_type: media.into() });
        }
    }
    (images, notes)
}

/// A picture's bytes as base64, read now; `None` when it is gone or grew too large.
pub fn base64_of(path: &str) -> Option<String> {
    read_base64(path, IMAGE_BYTES_MAX)
}

/// A PDF's bytes as base64, read now; `None` when it is gone or grew too large.
pub fn pdf_base64_of(path: &str) -> Option<String> {
    read_base64(path, PDF_BYTES_MAX)
}

fn read_base64(path: &str, max: u64) -> Option<String> {
    let bytes = std::fs::read(path).ok().filter(|b| !b.is_empty() && b.len() as u64 <= max)?;
    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(content: Value) -> InboundRow {
        InboundRow {
            id: "1".into(),
            seq: 1,
            kind: "chat".into(),
            timestamp: 0,
            trigger: true,
            channel_type: None,
            platform_id: None,
            thread_id: None,
            content: content.to_string(),
        }
    }

    #[test]
    fn pictures_in_the_inbox_become_image_blocks() {
        let ws = tempfile::tempdir().unwrap();
        let inbox = ws.path().join("inbox/m1");
        std::fs::create_dir_all(&inbox).unwrap();
        std::fs::write(inbox.join("cat.JPG"), b"jpeg bytes").unwrap();
        std::fs::write(inbox.join("notes.txt"), b"text").unwrap();
        std::fs::write(inbox.join("huge.png"), vec![0u8; IMAGE_BYTES_MAX as usize + 1]).unwrap();
        let files = serde_json::json!({"text": "look", "files": [
            {"name": "cat.JPG", "path": "/workspace/inbox/m1/cat.JPG"},
            {"name": "notes.txt", "path": "/workspace/inbox/m1/notes.txt"},
            {"name": "huge.png", "path": "/workspace/inbox/m1/huge.png"},
            {"name": "gone.png", "path": "/workspace/inbox/m1/gone.png"},
            {"name": "esc.png", "path": "/workspace/../etc/esc.png"},
        ]});
        let (images, notes) = blocks(ws.path(), &[row(files)]);
        let cat = inbox.join("cat.JPG").to_string_lossy().into_owned();
        assert_eq!(images, vec![Block::Image { path: cat.clone(), media_type: "image/jpeg".into() }]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("huge.png") && notes[0].contains("too large"), "{notes:?}");
        assert_eq!(base64_of(&cat).as_deref(), Some("anBlZyBieXRlcw=="));
        std::fs::write(inbox.join("r.PDF"), b"%PDF-1.4").unwrap();
        let pdf = serde_json::json!({"files": [{"name": "r.PDF", "path": "/workspace/inbox/m1/r.PDF"}]});
        let (blocks_, _) = blocks(ws.path(), &[row(pdf)]);
        let path = inbox.join("r.PDF").to_string_lossy().into_owned();
        assert_eq!(blocks_, vec![Block::Pdf { path: path.clone(), name: "r.PDF".into() }]);
        assert_eq!(pdf_base64_of(&path).as_deref(), Some("JVBERi0xLjQ="));
        assert_eq!(base64_of("/nonexistent/x.png"), None);
        // A picture with a copy made for the model: the model sees the copy.
        std::fs::write(inbox.join(".huge.png.model.jpg"), b"small jpeg").unwrap();
        let with_copy = serde_json::json!({"files": [{"name": "huge.png", "path": "/workspace/inbox/m1/huge.png",
            "model_path": "/workspace/inbox/m1/.huge.png.model.jpg"}]});
        let (blocks_, notes) = blocks(ws.path(), &[row(with_copy)]);
        let copy = inbox.join(".huge.png.model.jpg").to_string_lossy().into_owned();
        assert_eq!(
            (blocks_, notes),
            (vec![Block::Image { path: copy, media_type: "image/jpeg".into() }], vec![])
        );
    }
}
