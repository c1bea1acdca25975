//! The disposition tree (1–3 levels, admin-defined) and the checks a close
//! makes against it. Interactions keep the chosen path by name, so renaming
//! or deleting a node never rewrites history.

use serde::Serialize;
use utoipa::ToSchema;

use super::{Store, StoreError, StoreResult};
use crate::domain::DispositionId;

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Disposition {
    pub id: DispositionId,
    pub parent: Option<DispositionId>,
    pub name: String,
    /// 1 to 3.
    pub level: u8,
}

impl Store {
    /// Every node, parents before children, siblings by name.
    pub async fn list_dispositions(&self) -> StoreResult<Vec<Disposition>> {
        dispatch!(self.list_dispositions())
    }

    /// Add a node under `parent` (a root when `None`). At most 3 levels;
    /// names are unique among siblings (a `Conflict` otherwise).
    pub async fn create_disposition(
        &self,
        name: &str,
        parent: Option<DispositionId>,
    ) -> StoreResult<Disposition> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(StoreError::Invalid(
                "a disposition's name is 1 to 100 characters".into(),
            ));
        }
        dispatch!(self.create_disposition(name.to_string(), parent))
    }

    /// Remove a node and everything under it.
    pub async fn delete_disposition(&self, id: DispositionId) -> StoreResult<()> {
        dispatch!(self.delete_disposition(id))
    }
}

/// Check a chosen path against the tree: every level must name a child of
/// the previous one, and the path must end at a leaf (a disposition is the
/// most specific node). The error names the valid choices at the first
/// wrong level.
pub fn check_path(tree: &[Disposition], path: &[String]) -> Result<(), String> {
    if path.is_empty() || path.len() > 3 {
        return Err("a disposition is a path of 1 to 3 names".into());
    }
    let mut parent = None;
    for (depth, name) in path.iter().enumerate() {
        let children: Vec<&Disposition> = tree.iter().filter(|d| d.parent == parent).collect();
        match children.iter().find(|d| d.name == *name) {
            Some(node) => parent = Some(node.id),
            None => {
                let valid: Vec<&str> = children.iter().map(|d| d.name.as_str()).collect();
                return Err(if valid.is_empty() {
                    format!("`{name}` is not a disposition: none are defined here")
                } else {
                    format!(
                        "`{name}` is not a disposition at level {} (valid: {})",
                        depth + 1,
                        valid.join(", ")
                    )
                });
            }
        }
    }
    let below: Vec<&str> = tree
        .iter()
        .filter(|d| d.parent == parent)
        .map(|d| d.name.as_str())
        .collect();
    if below.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`{}` has sub-dispositions; choose one of: {}",
            path.join(" / "),
            below.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: i64, parent: Option<i64>, name: &str, level: u8) -> Disposition {
        Disposition {
            id: DispositionId(id),
            parent: parent.map(DispositionId),
            name: name.into(),
            level,
        }
    }

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_must_follow_the_tree_to_a_leaf() {
        let tree = vec![
            node(1, None, "Sales", 1),
            node(2, Some(1), "Won", 2),
            node(3, Some(1), "Lost", 2),
            node(4, None, "Spam", 1),
            node(5, Some(3), "Price", 3),
        ];
        assert_eq!(check_path(&tree, &path(&["Spam"])), Ok(()));
        assert_eq!(check_path(&tree, &path(&["Sales", "Won"])), Ok(()));
        assert_eq!(
            check_path(&tree, &path(&["Sales", "Lost", "Price"])),
            Ok(())
        );
        let e = check_path(&tree, &path(&["Sales"])).unwrap_err();
        assert!(e.contains("Won") && e.contains("Lost"), "{e}");
        let e = check_path(&tree, &path(&["Sales", "Maybe"])).unwrap_err();
        assert!(e.contains("level 2") && e.contains("Won"), "{e}");
        let e = check_path(&tree, &path(&["Won"])).unwrap_err();
        assert!(e.contains("Sales") && e.contains("Spam"), "{e}");
        assert!(check_path(&tree, &[]).is_err());
        assert!(check_path(&tree, &path(&["a", "b", "c", "d"])).is_err());
        assert!(check_path(&[], &path(&["Anything"])).is_err());
    }
}
