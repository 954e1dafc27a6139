//! Jobs survive a restart of the emulator (SQLite), the clock offset too; concurrent Put Job calls with one
//! name produce one job.

use crate::client::{job, ACCOUNT};
use crate::harness::{advance_clock, init_dir, Emulator};
use seedship_shared::api::{JobState, JobUpdate, Package, ReturnAddress};

#[test]
fn a_restart_keeps_every_job_and_the_clock() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let c = emu.client();
    for name in ["alpha", "beta", "gamma"] {
        c.put_job(ACCOUNT, &job(name, "West US", 2)).unwrap();
    }
    let mut ship = JobUpdate::default();
    ship.properties.state = Some(JobState::Shipping);
    ship.properties.return_address = Some(ReturnAddress {
        name: "A".into(),
        address: "B".into(),
        phone: "C".into(),
        email: "D".into(),
    });
    ship.properties.delivery_package = Some(Package {
        carrier_name: "FedEx".into(),
        tracking_number: "1".into(),
        ..Default::default()
    });
    c.update_job(ACCOUNT, "beta", &ship).unwrap();
    advance_clock(&emu, 10 * 24 * 3600);
    // the OData links name the port, which changes with the restart
    let summary = |c: &seedship_shared::api::BlockingApiClient| {
        let jobs = c.list_jobs().unwrap();
        jobs.into_iter()
            .map(|j| (j.name, j.state, j.storage_account_name))
            .collect::<Vec<_>>()
    };
    let without_links = |mut j: seedship_shared::api::Job| {
        j.odata_edit_link = None;
        j
    };
    let before = summary(&c);
    assert_eq!(before.len(), 3);
    let beta_before = without_links(c.get_job(ACCOUNT, "beta").unwrap());
    drop(c);
    emu.stop();

    let emu = Emulator::start(dir.path());
    let c = emu.client();
    assert_eq!(summary(&c), before);
    assert_eq!(without_links(c.get_job(ACCOUNT, "beta").unwrap()), beta_before);
    // the clock kept its offset: five more days expire the untouched Creating jobs, not the shipped one
    advance_clock(&emu, 5 * 24 * 3600);
    let names: Vec<String> = c.list_jobs().unwrap().into_iter().map(|j| j.name).collect();
    assert_eq!(names, ["beta"]);
}

#[test]
fn concurrent_puts_with_one_name_make_one_job() {
    let dir = init_dir();
    let emu = Emulator::start(dir.path());
    let opts = emu.client_options();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let opts = opts.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let c = seedship_shared::api::BlockingApiClient::new(opts).unwrap();
                let j = job("racing", "West US", i % 3 + 1);
                barrier.wait();
                c.put_job(ACCOUNT, &j).map_err(|e| e.to_string())
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap().expect("every Put of a Creating job succeeds");
    }
    let c = emu.client();
    let jobs = c.list_jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].name, "racing");
    let drives = c.get_job(ACCOUNT, "racing").unwrap().drives().len();
    assert!((1..=3).contains(&drives));
}
