//! The shipping-location rule of seed 000: ask List Locations for the storage account's region; if that
//! location's AlternateLocations contain the location itself it is open and used, otherwise one of the
//! alternates is used (the original may be closed for maintenance). A pure function, so it is tested without
//! a service; the client fetches an alternate's address when the first answer did not include it.

use super::types::Location;

/// What the rule decided for an origin region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocationChoice {
    /// The origin is open: ship there.
    Origin(String),
    /// The origin is closed: ship to this alternate instead.
    Alternate { closed: String, alternate: String },
}

impl LocationChoice {
    /// The name of the location to ship to.
    pub fn name(&self) -> &str {
        match self {
            LocationChoice::Origin(n) => n,
            LocationChoice::Alternate { alternate, .. } => alternate,
        }
    }
}

/// Why no location could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("the Import/Export service does not serve location '{0}'; check the storage account's region")]
    Unknown(String),
    #[error("location '{0}' is closed and names no open alternate; try again later or ask Azure support")]
    NoAlternate(String),
}

/// Applies seed 000's rule to a List Locations answer for `origin`. Among the alternates of a closed origin,
/// the first one that this answer shows as open wins; an alternate missing from the answer is acceptable (the
/// caller fetches its address); an alternate shown as closed itself is skipped.
pub fn choose_location(origin: &str, locations: &[Location]) -> Result<LocationChoice, LocationError> {
    let find = |name: &str| locations.iter().find(|l| l.name.eq_ignore_ascii_case(name));
    let here = find(origin).ok_or_else(|| LocationError::Unknown(origin.to_string()))?;
    if here.is_open() {
        return Ok(LocationChoice::Origin(here.name.clone()));
    }
    let alternates = here.alternate_locations.as_deref().unwrap_or(&[]);
    alternates
        .iter()
        .find(|alt| find(alt).is_none_or(Location::is_open))
        .map(|alt| LocationChoice::Alternate {
            closed: here.name.clone(),
            alternate: alt.clone(),
        })
        .ok_or_else(|| LocationError::NoAlternate(here.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(name: &str, alts: Option<&[&str]>) -> Location {
        Location {
            name: name.into(),
            alternate_locations: alts.map(|a| a.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn open_location_is_used() {
        let l = [loc("West US", Some(&["West US"]))];
        assert_eq!(
            choose_location("west us", &l),
            Ok(LocationChoice::Origin("West US".into()))
        );
        let l = [loc("West US", None)];
        assert_eq!(choose_location("West US", &l).unwrap().name(), "West US");
    }

    #[test]
    fn closed_location_uses_an_open_alternate() {
        let l = [
            loc("West Europe", Some(&["Closed Too", "North Europe"])),
            loc("Closed Too", Some(&["Elsewhere"])),
            loc("North Europe", None),
        ];
        assert_eq!(
            choose_location("West Europe", &l),
            Ok(LocationChoice::Alternate {
                closed: "West Europe".into(),
                alternate: "North Europe".into()
            })
        );
        // an alternate not in the answer is acceptable: the caller fetches it
        let l = [loc("West Europe", Some(&["North Europe"]))];
        assert_eq!(choose_location("West Europe", &l).unwrap().name(), "North Europe");
    }

    proptest::proptest! {
        /// Whatever the table, the answer obeys seed 000: an open origin is used as is; a closed one yields
        /// one of its own alternates that the table does not show as closed, or an error when there is none.
        #[test]
        fn the_rule_holds_for_any_table(
            table in proptest::collection::vec(
                (0u8..6, proptest::option::of(proptest::collection::vec(0u8..6, 0..4))),
                0..6,
            ),
            origin in 0u8..6,
        ) {
            let name = |i: u8| format!("L{i}");
            let mut locations: Vec<Location> = Vec::new();
            for (n, alts) in table {
                if locations.iter().all(|l| l.name != name(n)) {
                    locations.push(Location {
                        name: name(n),
                        alternate_locations: alts.map(|a| a.into_iter().map(name).collect()),
                        ..Default::default()
                    });
                }
            }
            let here = locations.iter().find(|l| l.name == name(origin));
            match (choose_location(&name(origin), &locations), here) {
                (Err(LocationError::Unknown(_)), None) => {}
                (Ok(LocationChoice::Origin(o)), Some(h)) => {
                    proptest::prop_assert_eq!(&o, &h.name);
                    proptest::prop_assert!(h.is_open());
                }
                (Ok(LocationChoice::Alternate { closed, alternate }), Some(h)) => {
                    proptest::prop_assert!(!h.is_open());
                    proptest::prop_assert_eq!(&closed, &h.name);
                    proptest::prop_assert!(h.alternate_locations.as_ref().unwrap().contains(&alternate));
                    let shown = locations.iter().find(|l| l.name == alternate);
                    proptest::prop_assert!(shown.is_none_or(Location::is_open));
                }
                (Err(LocationError::NoAlternate(n)), Some(h)) => {
                    proptest::prop_assert_eq!(&n, &h.name);
                    proptest::prop_assert!(!h.is_open());
                    let usable = h.alternate_locations.iter().flatten().any(|a| {
                        locations.iter().find(|l| &l.name == a).is_none_or(Location::is_open)
                    });
                    proptest::prop_assert!(!usable);
                }
                (other, h) => proptest::prop_assert!(false, "unexpected {:?} for {:?}", other, h),
            }
        }
    }

    #[test]
    fn unknown_or_dead_end_is_an_error() {
        assert_eq!(
            choose_location("Mars", &[]),
            Err(LocationError::Unknown("Mars".into()))
        );
        let l = [loc("A", Some(&[])), loc("B", Some(&["C"]))];
        assert_eq!(
            choose_location("A", &l),
            Err(LocationError::NoAlternate("A".into()))
        );
        let l = [loc("A", Some(&["B"])), loc("B", Some(&["C"]))];
        assert_eq!(
            choose_location("A", &l),
            Err(LocationError::NoAlternate("A".into()))
        );
    }
}
