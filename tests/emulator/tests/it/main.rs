//! Integration tests of seedship-emulator and of seedship-shared's Import/Export client against it. Every
//! test starts its own emulator on 127.0.0.1:0 in a temporary directory (`harness`: the seedship-emuharness
//! crate, shared with diskprep's tests).

mod answers;
mod arm;
mod cli;
mod client;
mod curl;
mod datacentre;
mod dcfixture;
mod entra;
mod persistence;
mod receive;
mod seed001;

use seedship_emuharness as harness;
