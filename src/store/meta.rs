//! Image, tag and container records in the store's redb database, beside
//! the snapshot records the driver api keeps there.

use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{meta_err, Result, StoreError};
use crate::model::{ContainerId, ContainerRecord, ImageId, ImageRecord, Reference};

const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
const CONTAINERS: TableDefinition<&str, &[u8]> = TableDefinition::new("containers");

/// Typed access to the image, tag and container tables.
pub struct Meta<'a> {
    db: &'a Database,
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Metadata(format!("record {what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(meta_err)
}

impl<'a> Meta<'a> {
    /// Wraps the database, creating the tables if needed.
    pub fn new(db: &'a Database) -> Result<Self> {
        let txn = db.begin_write().map_err(meta_err)?;
        txn.open_table(IMAGES).map_err(meta_err)?;
        txn.open_table(TAGS).map_err(meta_err)?;
        txn.open_table(CONTAINERS).map_err(meta_err)?;
        txn.commit().map_err(meta_err)?;
        Ok(Self { db })
    }

    /// Every image.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let table = txn.open_table(IMAGES).map_err(meta_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(meta_err)? {
            let (k, v) = entry.map_err(meta_err)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// The image with exactly this id.
    pub fn image(&self, id: &ImageId) -> Result<Option<ImageRecord>> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let table = txn.open_table(IMAGES).map_err(meta_err)?;
        let value = table.get(id.0.as_str()).map_err(meta_err)?;
        value.map(|v| decode(&id.0, v.value())).transpose()
    }

    /// Stores an image and points each of its tags at it, moving tags away
    /// from images that had them, in one transaction.
    pub fn put_image(&self, image: &ImageRecord) -> Result<()> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            let mut images = txn.open_table(IMAGES).map_err(meta_err)?;
            let mut tags = txn.open_table(TAGS).map_err(meta_err)?;
            for tag in &image.tags {
                let previous = tags
                    .insert(tag.0.as_str(), image.id.0.as_str())
                    .map_err(meta_err)?;
                let previous = previous.map(|p| p.value().to_owned());
                if let Some(old_id) = previous.filter(|old| *old != image.id.0) {
                    let old = images
                        .get(old_id.as_str())
                        .map_err(meta_err)?
                        .map(|v| v.value().to_vec());
                    if let Some(bytes) = old {
                        let mut old: ImageRecord = decode(&old_id, &bytes)?;
                        old.tags.retain(|t| t != tag);
                        images
                            .insert(old_id.as_str(), encode(&old)?.as_slice())
                            .map_err(meta_err)?;
                    }
                }
            }
            images
                .insert(image.id.0.as_str(), encode(image)?.as_slice())
                .map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)
    }

    /// Deletes an image record and its tags.
    pub fn delete_image(&self, image: &ImageRecord) -> Result<()> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            let mut images = txn.open_table(IMAGES).map_err(meta_err)?;
            let mut tags = txn.open_table(TAGS).map_err(meta_err)?;
            for tag in &image.tags {
                tags.remove(tag.0.as_str()).map_err(meta_err)?;
            }
            images.remove(image.id.0.as_str()).map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)
    }

    /// The image a tag points at.
    pub fn tag(&self, reference: &Reference) -> Result<Option<ImageId>> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let table = txn.open_table(TAGS).map_err(meta_err)?;
        let value = table.get(reference.0.as_str()).map_err(meta_err)?;
        Ok(value.map(|v| crate::model::Digest(v.value().to_owned())))
    }

    /// Every container.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let txn = self.db.begin_read().map_err(meta_err)?;
        let table = txn.open_table(CONTAINERS).map_err(meta_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(meta_err)? {
            let (k, v) = entry.map_err(meta_err)?;
            out.push(decode(k.value(), v.value())?);
        }
        out.sort_by_key(|c: &ContainerRecord| c.created_ns);
        Ok(out)
    }

    /// Stores a container record.
    pub fn put_container(&self, container: &ContainerRecord) -> Result<()> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            let mut table = txn.open_table(CONTAINERS).map_err(meta_err)?;
            table
                .insert(container.id.0.as_str(), encode(container)?.as_slice())
                .map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)
    }

    /// Deletes a container record.
    pub fn delete_container(&self, id: &ContainerId) -> Result<()> {
        let txn = self.db.begin_write().map_err(meta_err)?;
        {
            let mut table = txn.open_table(CONTAINERS).map_err(meta_err)?;
            table.remove(id.0.as_str()).map_err(meta_err)?;
        }
        txn.commit().map_err(meta_err)
    }
}
