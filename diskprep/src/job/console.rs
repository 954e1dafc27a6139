//! The operator's side of the import job: the shipping address and the job's link after preparation, the
//! questions and the review of `u:`, the job's status, and `delete-job`'s answers. Questions are asked on the
//! terminal only; without one, every answer must come from the command line.

use crate::job::create::{JobOutcome, JobRecord};
use crate::job::delete::{refusal_advice, DeleteOutcome};
use crate::job::ship::ShipDetails;
use seedship_shared::api::{Job, JobState, Location, LocationChoice};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

/// Whether questions can be asked (standard input is a terminal).
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks one question; an empty answer takes `default`. Without a terminal the default is taken, and a
/// question without one fails, naming the option to use.
pub fn ask(question: &str, default: Option<&str>, option: &str) -> anyhow::Result<String> {
    if let (false, Some(d)) = (interactive(), default) {
        return Ok(d.to_string());
    }
    if !interactive() {
        anyhow::bail!("{question} needs an answer, but standard input is not a terminal; give {option}");
    }
    match default {
        Some(d) => eprint!("{question} [{d}]: "),
        None => eprint!("{question}: "),
    }
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let answer = line.trim();
    Ok(match (answer.is_empty(), default) {
        (true, Some(d)) => d.to_string(),
        _ => answer.to_string(),
    })
}

/// Asks for a secret with the terminal's echo off.
pub fn ask_secret(question: &str, option: &str) -> anyhow::Result<String> {
    if !interactive() {
        anyhow::bail!("{question} needs an answer, but standard input is not a terminal; give {option}");
    }
    eprint!("{question} (not shown): ");
    let _ = std::io::stderr().flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal file descriptor.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let echo_off = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if echo_off {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: sets attributes read just before, with ECHO cleared.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        // SAFETY: restores the attributes read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    eprintln!();
    read?;
    Ok(line.trim().to_string())
}

/// Asks the operator to type `yes`.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    if !interactive() {
        anyhow::bail!("{question} needs a yes, but standard input is not a terminal; give --yes");
    }
    Ok(ask(&format!("{question} Type yes to go on"), None, "--yes")? == "yes")
}

pub fn print_address(l: &Location) {
    println!("Ship the drives to the {} data centre:", l.name);
    for line in l.address_lines() {
        println!("    {line}");
    }
    println!("Supported carriers: {}", l.supported_carriers.join(", "));
}

/// A dry run with a new job: the location it would be created at (after the closed-location rule), and
/// where the drives would go.
pub fn print_dry_run_create(choice: &LocationChoice, location: &Location) {
    println!("{}", dry_run_location(choice));
    print_address(location);
}

fn dry_run_location(choice: &LocationChoice) -> String {
    match choice {
        LocationChoice::Origin(name) => {
            format!("The import job would be created at location {name}.")
        }
        LocationChoice::Alternate { closed, alternate } => format!(
            "The import job would be created at location {alternate} (location {closed} is closed for now; \
             the service names {alternate} instead)."
        ),
    }
}

/// A dry run whose job exists already: its location and state.
pub fn print_dry_run_exists(job: &Job) {
    let p = &job.properties;
    println!(
        "The import job exists already at location {} (state {}); it would not be created again.",
        p.location.as_deref().unwrap_or("unknown"),
        p.state.map_or("unknown".into(), |s| s.to_string())
    );
}

/// After preparation: what happened to the job, where to ship, the link.
pub fn print_job(outcome: &JobOutcome, record_path: &Path, staging: &Path) {
    let r = &outcome.record;
    println!();
    if outcome.created {
        println!(
            "Created import job {} in storage account {} (location {}).",
            r.job_name, r.storage_account, r.location
        );
    } else {
        println!(
            "Import job {} already exists in storage account {} with these drives (state {}); nothing new was created.",
            r.job_name,
            r.storage_account,
            outcome.state.map_or("unknown".into(), |s| s.to_string())
        );
    }
    if let Some(closed) = &outcome.closed_origin {
        println!(
            "Location {closed} is closed for now; the service named {} instead.",
            outcome.ship_to.name
        );
    }
    let to_ship = matches!(outcome.state, None | Some(JobState::Creating));
    if to_ship {
        print_address(&outcome.ship_to);
    }
    println!("Job link: {}", r.link);
    println!("The job is recorded in {}.", record_path.display());
    println!("{}", next_step(outcome.state, staging));
}

/// What the operator does next, after preparation, given the job's state: ship the drives while the job is
/// `Creating`; follow it once shipped; move on to the agent once the import is complete.
fn next_step(state: Option<JobState>, staging: &Path) -> String {
    let follow = format!("seedship-diskprep u: s:{}", staging.display());
    match state {
        None | Some(JobState::Creating) => format!(
            "Put all drives in one package. After sending it, run `{follow}` to give the carrier and tracking \
             number; the drives must arrive within two weeks of that."
        ),
        Some(JobState::Completed) => format!(
            "The import is complete: the data centre copied the drives into the storage account, so there is \
             nothing to ship. Next: `seedship-agent backup` (or its scheduled run) verifies the imported blobs \
             and moves them into the vault; `{follow}` shows the return of the drives."
        ),
        Some(JobState::Closed) => format!(
            "The job is closed: the import is over and the drives were sent back; nothing to ship. `{follow}` \
             shows the return package."
        ),
        Some(s) => format!(
            "The drives were shipped already (the job is {s}); nothing to ship again. Follow the job with \
             `{follow}`."
        ),
    }
}

/// The review shown before `u:` commits.
pub fn print_review(d: &ShipDetails, ship_to: &Location) {
    println!("Shipping details for import job {}:", d.job_name);
    println!("  Carrier:         {}", d.carrier);
    println!("  Tracking number: {}", d.tracking_number);
    println!("  Drives:          {}", d.drive_count);
    println!("  Ship date:       {}", d.ship_date);
    println!("  Shipped to:      {} ({})", ship_to.recipient_name, ship_to.name);
    println!("  Return to:       {}", d.return_address.name);
    println!("                   {}", d.return_address.address);
    println!(
        "  Phone / email:   {} / {}",
        d.return_address.phone, d.return_address.email
    );
    println!(
        "  Return carrier:  {} account {}",
        d.return_shipping.carrier_name, d.return_shipping.carrier_account_number
    );
}

/// The job's state and each drive's state (Get Job).
pub fn print_status(job: &Job, record: &JobRecord) {
    let p = &job.properties;
    println!(
        "Import job {} (storage account {}): {}{}",
        record.job_name,
        record.storage_account,
        p.state.map_or("unknown".into(), |s| s.to_string()),
        p.percent_complete
            .map(|n| format!(", {n}% done"))
            .unwrap_or_default()
    );
    if let Some(pkg) = &p.delivery_package {
        println!(
            "  Sent with {} tracking number {}{}",
            pkg.carrier_name,
            pkg.tracking_number,
            pkg.ship_date
                .as_deref()
                .map(|d| format!(" on {d}"))
                .unwrap_or_default()
        );
    }
    for d in job.drives() {
        println!(
            "  Drive {}: {}{}",
            d.drive_id,
            d.state.map_or("unknown".into(), |s| format!("{s:?}")),
            d.percent_complete
                .map(|n| format!(", {n}% copied"))
                .unwrap_or_default()
        );
    }
    if let Some(pkg) = &p.return_package {
        println!(
            "  Returned with {} tracking number {}",
            pkg.carrier_name, pkg.tracking_number
        );
    }
    println!("Job link: {}", record.link);
}

/// What `delete-job` did.
pub fn print_delete(outcome: &DeleteOutcome, record: &JobRecord) {
    match outcome {
        DeleteOutcome::Deleted(state) => println!(
            "Deleted import job {} (it was {state}); the service no longer keeps its return address or carrier account.",
            record.job_name
        ),
        DeleteOutcome::Gone => println!(
            "Import job {} is no longer known to the service (deleted earlier or expired); nothing to delete.",
            record.job_name
        ),
        DeleteOutcome::Refused(state) => println!(
            "Import job {} is {state} and cannot be deleted now: {}.",
            record.job_name,
            refusal_advice(*state)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completed_job_is_not_shipped_again() {
        let t = next_step(Some(JobState::Completed), Path::new("/srv/staging"));
        assert!(t.contains("import is complete"), "{t}");
        assert!(t.contains("seedship-agent backup"), "{t}");
        assert!(!t.contains("After sending it"), "{t}");
    }

    #[test]
    fn a_shipped_job_is_followed_not_shipped_again() {
        let t = next_step(Some(JobState::Transferring), Path::new("/srv/staging"));
        assert!(t.contains("shipped already (the job is Transferring)"), "{t}");
        assert!(t.contains("`seedship-diskprep u: s:/srv/staging`"), "{t}");
    }

    #[test]
    fn a_dry_run_names_the_location_and_its_alternate() {
        let t = dry_run_location(&LocationChoice::Alternate {
            closed: "West Europe".into(),
            alternate: "North Europe".into(),
        });
        assert!(
            t.starts_with("The import job would be created at location North Europe"),
            "{t}"
        );
        assert!(t.contains("West Europe is closed"), "{t}");
    }

    #[test]
    fn a_new_job_is_shipped() {
        let t = next_step(Some(JobState::Creating), Path::new("/srv/staging"));
        assert!(
            t.contains("After sending it, run `seedship-diskprep u: s:/srv/staging`"),
            "{t}"
        );
    }
}
