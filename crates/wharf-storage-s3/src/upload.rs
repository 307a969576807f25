//! Uploads as S3 multipart uploads that any replica can continue.
//!
//! ```text
//! uploads/<id>/state   {multipart, parts, size, tail, hash}: the truth
//! uploads/<id>/tail    bytes after the last part (< 5 MiB); only the first
//!                      `tail` bytes count
//! uploads/<id>/data    the completed multipart upload, just before commit
//! uploads/<id>/info    the Store's own record (repository, algorithm)
//! ```
//!
//! Crash safety comes from write order: a part or the tail object is
//! written before the state that mentions it, so the state only ever
//! describes bytes that are stored. A crash in between leaves an unused
//! part (overwritten by the next part with the same number) or tail bytes
//! beyond `tail` (ignored).

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::{ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use wharf_oci::{Digest, Hasher, HasherState};
use wharf_storage::{layout, AppendOutcome, ByteStream, StorageError, StorageResult};

use crate::backend::{s3_err, S3Backend};
use crate::config::MIN_PART_SIZE;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UploadState {
    /// The S3 multipart upload, created when the first part is cut.
    pub multipart: Option<String>,
    pub parts: Vec<Part>,
    /// Bytes in the upload: every part plus the tail.
    pub size: u64,
    /// Leading bytes of the tail object that belong to the upload.
    pub tail: u64,
    /// The running hash over exactly `size` bytes.
    pub hash: Option<HasherState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Part {
    pub etag: String,
    pub size: u64,
}

impl UploadState {
    fn parts_size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum()
    }
}

fn state_key(id: &str) -> String {
    format!("{}/state", layout::upload_dir(id))
}

fn tail_key(id: &str) -> String {
    format!("{}/tail", layout::upload_dir(id))
}

/// Hash `bytes[from..]` on the blocking pool: a part is megabytes, too much
/// for a thread that serves connections.
async fn hash_from(mut hasher: Hasher, bytes: Bytes, from: usize) -> StorageResult<Hasher> {
    if from >= bytes.len() {
        return Ok(hasher);
    }
    tokio::task::spawn_blocking(move || {
        hasher.update(&bytes[from..]);
        hasher
    })
    .await
    .map_err(|e| StorageError::io("hashing an upload part", io::Error::other(e)))
}

impl S3Backend {
    pub(crate) async fn create_upload(&self, id: &str) -> StorageResult<()> {
        self.save_state(id, &UploadState::default()).await
    }

    pub(crate) async fn load_state(&self, id: &str) -> StorageResult<Option<UploadState>> {
        let Some(bytes) = self.get_opt(&state_key(id)).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt {
                key: state_key(id),
                reason: e.to_string(),
            })
    }

    async fn save_state(&self, id: &str, state: &UploadState) -> StorageResult<()> {
        let json = serde_json::to_vec(state).expect("upload state serialises");
        self.put_bytes(&state_key(id), json.into()).await
    }

    /// The first `state.tail` bytes of the tail object.
    async fn read_tail(&self, id: &str, state: &UploadState) -> StorageResult<Bytes> {
        if state.tail == 0 {
            return Ok(Bytes::new());
        }
        let bytes = self.get_opt(&tail_key(id)).await?.unwrap_or_default();
        if (bytes.len() as u64) < state.tail {
            return Err(StorageError::Corrupt {
                key: tail_key(id),
                reason: format!("{} bytes, the upload needs {}", bytes.len(), state.tail),
            });
        }
        Ok(bytes.slice(..state.tail as usize))
    }

    /// Upload `part` as the next part, creating the multipart upload first
    /// if this is the first one.
    async fn put_next_part(
        &self,
        id: &str,
        state: &mut UploadState,
        part: Bytes,
    ) -> StorageResult<()> {
        let key = layout::upload_data(id);
        let path = self.path(&key);
        let multipart = match &state.multipart {
            Some(m) => m.clone(),
            None => {
                let m = self
                    .store
                    .create_multipart(&path)
                    .await
                    .map_err(s3_err(format!("starting the multipart upload of {key}")))?;
                state.multipart = Some(m.clone());
                m
            }
        };
        let size = part.len() as u64;
        let index = state.parts.len();
        let id_part = self
            .store
            .put_part(&path, &multipart, index, PutPayload::from_bytes(part))
            .await
            .map_err(s3_err(format!("uploading part {} of {key}", index + 1)))?;
        state.parts.push(Part {
            etag: id_part.content_id,
            size,
        });
        Ok(())
    }

    /// Append the body: whole parts go to S3 as soon as they fill up, the
    /// remainder becomes the tail (or a part of its own when it reaches the
    /// S3 minimum). Bytes are hashed when they are stored, never before, so
    /// every persisted state's hash covers exactly its `size`.
    pub(crate) async fn append(
        &self,
        id: &str,
        offset: u64,
        mut body: ByteStream,
        mut hasher: Hasher,
    ) -> StorageResult<AppendOutcome> {
        let mut state = self
            .load_state(id)
            .await?
            .ok_or_else(|| StorageError::UploadUnknown(id.to_string()))?;
        if offset != state.size {
            return Err(StorageError::RangeMismatch {
                current: state.size,
                requested: offset,
            });
        }
        let part_size = self.config.part_size as usize;
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&self.read_tail(id, &state).await?);
        // The tail is already in the hash; new bytes are not, yet.
        let mut hashed = buffer.len();
        let old_tail = state.tail;
        let mut cut_a_part = false;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::BodyInterrupted)?;
            buffer.extend_from_slice(&chunk);
            while buffer.len() >= part_size {
                let part = buffer.split_to(part_size).freeze();
                hasher = hash_from(hasher, part.clone(), hashed).await?;
                hashed = 0;
                self.put_next_part(id, &mut state, part).await?;
                state.tail = 0;
                state.size = state.parts_size();
                state.hash = Some(hasher.export());
                self.save_state(id, &state).await?;
                cut_a_part = true;
            }
        }
        let rest = buffer.freeze();
        hasher = hash_from(hasher, rest.clone(), hashed).await?;
        if rest.len() as u64 >= MIN_PART_SIZE {
            self.put_next_part(id, &mut state, rest).await?;
            state.tail = 0;
        } else if cut_a_part || rest.len() as u64 != old_tail {
            if !rest.is_empty() {
                self.put_bytes(&tail_key(id), rest.clone()).await?;
            }
            state.tail = rest.len() as u64;
        } else {
            // Nothing new arrived: the stored state already says it all.
            return Ok(AppendOutcome {
                size: state.size,
                hasher,
            });
        }
        state.size = state.parts_size() + state.tail;
        state.hash = Some(hasher.export());
        self.save_state(id, &state).await?;
        Ok(AppendOutcome {
            size: state.size,
            hasher,
        })
    }

    pub(crate) async fn persisted_hasher(&self, id: &str) -> StorageResult<Option<(u64, Hasher)>> {
        let Some(state) = self.load_state(id).await? else {
            return Ok(None);
        };
        let Some(hash) = &state.hash else {
            return Ok(None);
        };
        let hasher = Hasher::import(hash).map_err(|e| StorageError::Corrupt {
            key: state_key(id),
            reason: e.to_string(),
        })?;
        if hasher.len() != state.size {
            return Err(StorageError::Corrupt {
                key: state_key(id),
                reason: format!(
                    "hash covers {} bytes, upload has {}",
                    hasher.len(),
                    state.size
                ),
            });
        }
        Ok(Some((state.size, hasher)))
    }

    /// Only an upload without parts can be read back: S3 does not serve the
    /// parts of an unfinished multipart upload. The store needs this only
    /// when a client closes an upload with a digest of another algorithm
    /// than it opened it with.
    pub(crate) async fn read_back(&self, id: &str) -> StorageResult<ByteStream> {
        let state = self
            .load_state(id)
            .await?
            .ok_or_else(|| StorageError::UploadUnknown(id.to_string()))?;
        if !state.parts.is_empty() {
            return Err(StorageError::io(
                format!("reading back upload {id}"),
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the upload is an unfinished S3 multipart upload, which cannot be read back; \
                     close it with a digest of the algorithm it was opened with",
                ),
            ));
        }
        let tail = self.read_tail(id, &state).await?;
        Ok(Box::pin(futures_util::stream::iter([Ok(tail)])))
    }

    /// Publish the verified upload under its digest, then forget it.
    pub(crate) async fn commit(&self, id: &str, digest: &Digest) -> StorageResult<()> {
        let blob_key = layout::blob(digest);
        let Some(state) = self.load_state(id).await? else {
            // A commit retried after it wrote the blob and removed the state.
            if self.store.head(&self.path(&blob_key)).await.is_ok() {
                self.remove_upload(id).await?;
                return Ok(());
            }
            return Err(StorageError::UploadUnknown(id.to_string()));
        };
        // Written even when the blob exists: the same verified bytes replace
        // it atomically and renew its modification time, so garbage
        // collection's grace period starts over for a blob pushed again.
        if state.parts.is_empty() {
            // Smaller than one part: a single PUT of bytes already verified.
            let tail = self.read_tail(id, &state).await?;
            self.put_bytes(&blob_key, tail).await?;
        } else {
            self.complete(id, state).await?;
            self.store
                .copy(&self.path(&layout::upload_data(id)), &self.path(&blob_key))
                .await
                .map_err(s3_err(format!("copying upload {id} to {blob_key}")))?;
        }
        self.remove_upload(id).await?;
        Ok(())
    }

    /// Complete the multipart upload into `uploads/<id>/data`, the tail as
    /// its last part (S3 lets only the last part be small). Idempotent: a
    /// commit retried after a crash finds the data object already there.
    async fn complete(&self, id: &str, mut state: UploadState) -> StorageResult<()> {
        let key = layout::upload_data(id);
        let path = self.path(&key);
        if self.store.head(&path).await.is_ok() {
            return Ok(());
        }
        let tail = self.read_tail(id, &state).await?;
        if !tail.is_empty() {
            self.put_next_part(id, &mut state, tail).await?;
        }
        let multipart = state
            .multipart
            .clone()
            .expect("an upload with parts has a multipart id");
        let parts = state
            .parts
            .iter()
            .map(|p| PartId {
                content_id: p.etag.clone(),
            })
            .collect();
        self.store
            .complete_multipart(&path, &multipart, parts)
            .await
            .map_err(s3_err(format!("completing the multipart upload of {key}")))?;
        Ok(())
    }

    /// Remove every object of the upload and abort its multipart upload, so
    /// S3 frees the parts.
    pub(crate) async fn remove_upload(&self, id: &str) -> StorageResult<bool> {
        let Some(state) = self.load_state(id).await? else {
            // Maybe a half-removed upload: clear what is left.
            self.delete_prefix_objects(&layout::upload_dir(id)).await?;
            return Ok(false);
        };
        if let Some(multipart) = &state.multipart {
            let path = self.path(&layout::upload_data(id));
            if self.store.head(&path).await.is_err() {
                // Best effort: an already completed or aborted upload is fine.
                if let Err(e) = self.store.abort_multipart(&path, multipart).await {
                    tracing::debug!(upload = id, error = %e, "aborting a multipart upload");
                }
            }
        }
        self.delete_prefix_objects(&layout::upload_dir(id)).await?;
        Ok(true)
    }

    pub(crate) async fn delete_prefix_objects(&self, prefix: &str) -> StorageResult<()> {
        for meta in self.list_recursive(prefix).await? {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_err(format!("removing {}", meta.location))(e)),
            }
        }
        Ok(())
    }

    /// Uploads in progress with the seconds since they last changed.
    pub(crate) async fn list_uploads(&self) -> StorageResult<Vec<(String, u64)>> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        let mut out = Vec::new();
        for meta in self.list_recursive(layout::UPLOADS).await? {
            let Some(rel) = self.relative(&meta, layout::UPLOADS) else {
                continue;
            };
            if let Some(id) = rel.strip_suffix("/state") {
                let age = (now - meta.last_modified.timestamp()).max(0) as u64;
                out.push((id.to_string(), age));
            }
        }
        Ok(out)
    }
}
