//! The worker's export as the agent reports it: the agent reads the model card
//! through its own view of it (it never links the worker), so the two are
//! checked against each other here, on a card the worker writes.

use scop_agent::relay::Relay;
use scop_core::job_dir::{ARCH_FILE, CARD_FILE, TORCHSCRIPT_FILE, WEIGHTS_FILE};
use scop_worker::export::ModelCard;

/// The export's finish names its files relative to the job's directory
/// and carries the model card's figures for the final table.
#[test]
fn the_export_reports_its_files_and_the_model_cards_figures() {
    let job = tempfile::tempdir().unwrap();
    let dir = job.path().join("export");
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    let desc = scop_core::arch::ArchDesc::new("resnet20", 10, 1).unwrap();
    let mut card = ModelCard::new(&desc, None, 32).unwrap();
    card.params = 150_000;
    card.flops = 22_000_000;
    card.prune = Some(scop_core::spec::PruneSpec { rate: 0.45, ..Default::default() });
    for (key, value) in
        [("top1_dense", 0.92), ("top5_dense", 0.998), ("top1_pruned", 0.915), ("top5_pruned", 0.997)]
    {
        card.metrics.insert(key.into(), value);
    }
    card.write(&dir.join(CARD_FILE)).unwrap();
    for name in [TORCHSCRIPT_FILE, WEIGHTS_FILE, ARCH_FILE, "notes.txt"] {
        std::fs::write(dir.join(name), b"x").unwrap();
    }
    let finished = Relay::default().finished(Some(&dir));
    let files: Vec<(&str, &str)> =
        finished.artifacts.iter().map(|a| (a.path.as_str(), a.kind.as_str())).collect();
    assert_eq!(
        files,
        [
            ("export/arch.json", "arch"),
            ("export/model-card.json", "model_card"),
            ("export/model.pt", "torchscript"),
            ("export/model.safetensors", "safetensors"),
            ("export/notes.txt", "file"),
        ]
    );
    let metric = |key: &str| finished.metrics.get(key).copied();
    assert_eq!(metric("top1_dense"), Some(0.92));
    assert_eq!(metric("top5_pruned"), Some(0.997));
    assert_eq!(metric("params_dense"), Some(desc.cost(32).params as f64));
    assert_eq!(metric("params_pruned"), Some(150_000.0));
    assert_eq!(metric("flops_pruned"), Some(22_000_000.0));
    assert_eq!(metric("prune_rate"), Some(0.45));
    assert_eq!(metric("input_size"), Some(32.0));
    // The card lacks the figure the finetune stage did not record.
    assert_eq!(metric("top1_pruned_before_finetune"), None);
}
