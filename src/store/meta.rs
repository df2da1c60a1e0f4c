//! Image, tag and container records in the store's database, beside the
//! snapshot records the driver api keeps there. Each public method is one
//! whole operation in one transaction, so a crash never leaves half of it
//! and another process never sees half of it.

use crate::db::{Database, DbResult, Txn};
use crate::snapshotter::is_committed_in;
use crate::store::keys::layer_snapshot_key;
use strata_driver_api::{failpoint, SnapshotKey};

use crate::error::{Result, StoreError};
use crate::model::{
    ChainId, ContainerId, ContainerRecord, Digest, ImageId, ImageRecord, Reference,
};

const IMAGES: &str = "images";
const TAGS: &str = "tags";
const CONTAINERS: &str = "containers";

/// Typed access to the image, tag and container tables.
pub struct Meta<'a> {
    db: &'a Database,
}

fn image_in(t: &Txn<'_>, id: &str) -> Result<Option<ImageRecord>> {
    Ok(t.get_json(IMAGES, id)?)
}

/// An image in `t` whose layers include `chain`, if any.
pub(crate) fn image_with_layer_in(t: &Txn<'_>, chain: &ChainId) -> DbResult<Option<ImageId>> {
    Ok(t.scan_json::<ImageRecord>(IMAGES)?
        .into_iter()
        .find(|(_, i)| i.layers.iter().any(|l| &l.chain_id == chain))
        .map(|(_, i)| i.id))
}

/// The container in `t` whose writable layer is snapshot `key`, if any.
pub(crate) fn container_with_snapshot_in(
    t: &Txn<'_>,
    key: &SnapshotKey,
) -> DbResult<Option<ContainerId>> {
    Ok(t.scan_json::<ContainerRecord>(CONTAINERS)?
        .into_iter()
        .find(|(_, c)| &c.snapshot == key)
        .map(|(_, c)| c.id))
}

/// Refuses `image` unless every layer it names is a committed snapshot in
/// `t`: a layer another process removed after this one found it (an
/// `rmi` of the image that had it) fails the record instead of leaving an
/// image whose layer is gone.
fn require_layers_in(t: &Txn<'_>, image: &ImageRecord) -> Result<()> {
    for layer in &image.layers {
        let key = layer_snapshot_key(&layer.chain_id);
        if !is_committed_in(t, &key)? {
            return Err(StoreError::LayerRemoved {
                layer: key.to_string(),
                image: image.id.to_string(),
            });
        }
    }
    Ok(())
}

fn containers_in(t: &Txn<'_>) -> Result<Vec<ContainerRecord>> {
    let mut out: Vec<ContainerRecord> = t
        .scan_json(CONTAINERS)?
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    out.sort_by_key(|c| c.created_ns);
    Ok(out)
}

/// Points `tag` at `id`, taking it off the image that had it.
fn move_tag(t: &Txn<'_>, tag: &Reference, id: &ImageId) -> Result<()> {
    let previous: Option<String> = t.get_json(TAGS, &tag.0)?;
    t.put_json(TAGS, &tag.0, &id.0)?;
    if let Some(old_id) = previous.filter(|old| *old != id.0) {
        if let Some(mut old) = image_in(t, &old_id)? {
            old.tags.retain(|x| x != tag);
            t.put_json(IMAGES, &old_id, &old)?;
        }
    }
    Ok(())
}

impl<'a> Meta<'a> {
    /// Wraps the database.
    pub fn new(db: &'a Database) -> Result<Self> {
        Ok(Self { db })
    }

    /// Every image.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.db.read(|t| {
            Ok(t.scan_json::<ImageRecord>(IMAGES)?
                .into_iter()
                .map(|(_, i)| i)
                .collect())
        })
    }

    /// The image with exactly this id.
    pub fn image(&self, id: &ImageId) -> Result<Option<ImageRecord>> {
        self.db.read(|t| image_in(t, &id.0))
    }

    /// Stores an image and points each of its tags at it, moving tags away
    /// from images that had them.
    pub fn put_image(&self, image: &ImageRecord) -> Result<()> {
        self.db.write(|t| {
            require_layers_in(t, image)?;
            for tag in &image.tags {
                move_tag(t, tag, &image.id)?;
            }
            // The same image again (same config): it keeps its other tags.
            let mut image = image.clone();
            if let Some(old) = image_in(t, &image.id.0)? {
                for tag in old.tags {
                    if !image.tags.contains(&tag) {
                        image.tags.push(tag);
                    }
                }
            }
            t.put_json(IMAGES, &image.id.0, &image)?;
            Ok(())
        })
    }

    /// Records the images of one load together: each keeps the tags an
    /// earlier record of the same id had, and takes its own tags from other
    /// images. Returns the records as stored.
    pub fn add_images(&self, images: Vec<ImageRecord>) -> Result<Vec<ImageRecord>> {
        self.db.write(|t| {
            let mut stored = Vec::new();
            for image in &images {
                require_layers_in(t, image)?;
                let mut image = image.clone();
                if let Some(existing) = image_in(t, &image.id.0)? {
                    for tag in existing.tags {
                        if !image.tags.contains(&tag) {
                            image.tags.push(tag);
                        }
                    }
                }
                for tag in &image.tags {
                    move_tag(t, tag, &image.id)?;
                }
                t.put_json(IMAGES, &image.id.0, &image)?;
                stored.push(image);
            }
            Ok(stored)
        })
    }

    /// Adds `tag` to the image `id` (moving it off another image).
    pub fn add_tag(&self, id: &ImageId, tag: &Reference) -> Result<ImageRecord> {
        self.db.write(|t| {
            let mut image =
                image_in(t, &id.0)?.ok_or_else(|| StoreError::UnknownImage(id.0.clone()))?;
            move_tag(t, tag, id)?;
            if !image.tags.contains(tag) {
                image.tags.push(tag.clone());
            }
            t.put_json(IMAGES, &id.0, &image)?;
            Ok(image)
        })
    }

    /// Removes `tag` from the image it points at; the image stays.
    pub fn untag(&self, tag: &Reference) -> Result<ImageRecord> {
        self.db.write(|t| {
            let id: String = t
                .get_json(TAGS, &tag.0)?
                .ok_or_else(|| StoreError::UnknownImage(tag.0.clone()))?;
            t.remove(TAGS, &tag.0)?;
            // A kill here must leave the tag whole: the transaction is not
            // committed (the crash test's untag case).
            failpoint("meta.untag.tag_removed");
            let mut image = image_in(t, &id)?.ok_or_else(|| {
                StoreError::Metadata(format!("tag {tag} points at missing image {id}"))
            })?;
            image.tags.retain(|x| x != tag);
            t.put_json(IMAGES, &id, &image)?;
            Ok(image)
        })
    }

    /// Deletes an image record and its tags unless a container uses it;
    /// returns the containers that do (then nothing was deleted).
    pub fn remove_image_unless_used(&self, id: &ImageId) -> Result<Vec<ContainerRecord>> {
        self.db.write(|t| {
            let users: Vec<ContainerRecord> = containers_in(t)?
                .into_iter()
                .filter(|c| c.image == *id)
                .collect();
            if !users.is_empty() {
                return Ok(users);
            }
            if let Some(image) = image_in(t, &id.0)? {
                for tag in &image.tags {
                    let points_here: Option<String> = t.get_json(TAGS, &tag.0)?;
                    if points_here.as_deref() == Some(id.0.as_str()) {
                        t.remove(TAGS, &tag.0)?;
                    }
                }
            }
            // A kill between the tags and the image must leave both: the
            // transaction is not committed (the crash test's rmi case).
            failpoint("meta.rmi.tags_removed");
            t.remove(IMAGES, &id.0)?;
            Ok(Vec::new())
        })
    }

    /// The image a tag points at.
    pub fn tag(&self, reference: &Reference) -> Result<Option<ImageId>> {
        self.db
            .read(|t| Ok(t.get_json::<String>(TAGS, &reference.0)?.map(Digest)))
    }

    /// Every tag and the image id it points at.
    pub fn tags(&self) -> Result<Vec<(Reference, ImageId)>> {
        self.db.read(|t| {
            Ok(t.scan_json::<String>(TAGS)?
                .into_iter()
                .map(|(k, v)| (Reference(k), Digest(v)))
                .collect())
        })
    }

    /// Removes a tag outright (repair of a tag whose image is gone).
    pub fn delete_tag(&self, tag: &Reference) -> Result<()> {
        self.db.write(|t| Ok(t.remove(TAGS, &tag.0).map(drop)?))
    }

    /// Every container, oldest first.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        self.db.read(containers_in)
    }

    /// One container.
    pub fn container(&self, id: &ContainerId) -> Result<Option<ContainerRecord>> {
        self.db.read(|t| Ok(t.get_json(CONTAINERS, &id.0)?))
    }

    /// Stores a new container record, refusing a taken name and an image
    /// that is gone (removed by another process meanwhile).
    pub fn add_container(&self, container: &ContainerRecord) -> Result<()> {
        self.db.write(|t| {
            if image_in(t, &container.image.0)?.is_none() {
                return Err(StoreError::UnknownImage(container.image.0.clone()));
            }
            if containers_in(t)?.iter().any(|c| c.name == container.name) {
                return Err(StoreError::Conflict(format!(
                    "container name {}",
                    container.name
                )));
            }
            t.put_json(CONTAINERS, &container.id.0, container)?;
            Ok(())
        })
    }

    /// Renames a container in one transaction, refusing a name another
    /// container has; returns the renamed record.
    pub fn rename_container(&self, id: &ContainerId, name: &str) -> Result<ContainerRecord> {
        self.db.write(|t| {
            let all = containers_in(t)?;
            if all.iter().any(|c| c.name == name && c.id != *id) {
                return Err(StoreError::Conflict(format!("container name {name}")));
            }
            let mut record = all
                .into_iter()
                .find(|c| c.id == *id)
                .ok_or_else(|| StoreError::UnknownContainer(id.0.clone()))?;
            record.name = name.to_owned();
            t.put_json(CONTAINERS, &record.id.0, &record)?;
            Ok(record)
        })
    }

    /// Changes container `id`'s record as it is now, in one transaction:
    /// `change` edits it and says whether to store the edit. Returns the
    /// record as stored, `None` when there is none.
    pub fn update_container(
        &self,
        id: &ContainerId,
        change: impl FnOnce(&mut ContainerRecord) -> bool,
    ) -> Result<Option<ContainerRecord>> {
        self.db.write(|t| {
            let Some(mut record) = t.get_json::<ContainerRecord>(CONTAINERS, &id.0)? else {
                return Ok(None);
            };
            if change(&mut record) {
                t.put_json(CONTAINERS, &id.0, &record)?;
            }
            Ok(Some(record))
        })
    }

    /// Stores a container record.
    pub fn put_container(&self, container: &ContainerRecord) -> Result<()> {
        self.db
            .write(|t| Ok(t.put_json(CONTAINERS, &container.id.0, container)?))
    }

    /// Deletes a container record.
    pub fn delete_container(&self, id: &ContainerId) -> Result<()> {
        self.db
            .write(|t| Ok(t.remove(CONTAINERS, &id.0).map(drop)?))
    }
}
