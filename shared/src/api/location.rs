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
