//! Integration tests of seedship-emulator and of seedship-shared's Import/Export client against it. Every
//! test starts its own emulator on 127.0.0.1:0 in a temporary directory ([`harness`]).

mod cli;
mod client;
mod curl;
mod datacentre;
mod harness;
mod persistence;
mod seed001;
