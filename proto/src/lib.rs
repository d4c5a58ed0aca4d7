//! The `scop.v1` gRPC contract: generated prost messages and tonic services.
//!
//! Generated code stays in this crate. Servers and clients convert to and from
//! `scop-core` domain types at their gRPC handlers.

/// Everything in the `scop.v1` protobuf package.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("scop.v1");
}

/// The one mapping between the wire's `scop.v1.Stage` and the domain [`Stage`],
/// so no edge keeps its own table of stages.
mod stage {
    use scop_core::stage::Stage;

    use super::v1;

    impl From<Stage> for v1::Stage {
        fn from(stage: Stage) -> Self {
            match stage {
                Stage::Pretrain => Self::Pretrain,
                Stage::Knockoff => Self::Knockoff,
                Stage::Score => Self::Score,
                Stage::Decide => Self::Decide,
                Stage::Finetune => Self::Finetune,
                Stage::Export => Self::Export,
                Stage::Sweep => Self::Sweep,
            }
        }
    }

    impl v1::Stage {
        /// The domain stage; `None` for `STAGE_UNSPECIFIED`.
        pub fn domain(self) -> Option<Stage> {
            match self {
                Self::Unspecified => None,
                Self::Pretrain => Some(Stage::Pretrain),
                Self::Knockoff => Some(Stage::Knockoff),
                Self::Score => Some(Stage::Score),
                Self::Decide => Some(Stage::Decide),
                Self::Finetune => Some(Stage::Finetune),
                Self::Export => Some(Stage::Export),
                Self::Sweep => Some(Stage::Sweep),
            }
        }
    }
}

/// The encoded `FileDescriptorSet` of `scop.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("scop_v1_descriptor");

#[cfg(test)]
mod tests {
    use super::v1;
    use prost::Message;

    #[test]
    fn job_event_round_trips_through_the_wire_format() {
        let event = v1::JobEvent {
            job_id: "job-1".into(),
            sequence: 42,
            time_ms: 1_700_000_000_000,
            kind: Some(v1::job_event::Kind::Progress(v1::Progress {
                stage: v1::Stage::Knockoff as i32,
                epoch: 1,
                epochs: 2,
                step: 10,
                steps: 100,
                loss: 0.5,
                accuracy: 0.9,
                samples_per_second: 480.0,
                eta_seconds: 12.0,
            })),
        };
        let bytes = event.encode_to_vec();
        assert!(!bytes.is_empty());
        let decoded = v1::JobEvent::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn descriptor_set_names_both_services() {
        let set = prost_types_free_names(super::FILE_DESCRIPTOR_SET);
        assert!(set.contains("JobService"), "{set}");
        assert!(set.contains("WorkerService"), "{set}");
    }

    #[test]
    fn every_domain_stage_maps_to_its_wire_stage_and_back() {
        for stage in scop_core::stage::Stage::ALL {
            let wire = v1::Stage::from(stage);
            assert_ne!(wire, v1::Stage::Unspecified, "{stage:?}");
            assert_eq!(wire.as_str_name().to_lowercase(), format!("stage_{}", stage.as_str()));
            assert_eq!(wire.domain(), Some(stage));
        }
        assert_eq!(v1::Stage::Unspecified.domain(), None);
    }

    /// The descriptor set is protobuf; service names appear verbatim in it.
    fn prost_types_free_names(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }
}
