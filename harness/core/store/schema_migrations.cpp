#include "core/store/schema_migrations.h"

namespace lory {

// Migration i brings the schema from version i to i + 1. Never edit a released entry: append.
const std::vector<const char*>& results_schema_migrations() {
  static const std::vector<const char*> list = {
      R"sql(
CREATE TABLE experiments (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  file TEXT NOT NULL,
  description TEXT NOT NULL DEFAULT '',
  source_toml TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE runs (
  id INTEGER PRIMARY KEY,
  experiment_id INTEGER NOT NULL REFERENCES experiments(id),
  cell_hash TEXT NOT NULL,
  label TEXT NOT NULL,
  config TEXT NOT NULL CHECK (json_valid(config)),
  status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'diverged', 'interrupted')),
  seed INTEGER NOT NULL,
  started_at TEXT,
  ended_at TEXT,
  code_version TEXT,
  host TEXT,
  last_step INTEGER NOT NULL DEFAULT 0,
  total_steps INTEGER NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT '',
  corpus_checksum TEXT,
  UNIQUE (experiment_id, cell_hash)
);
CREATE TABLE run_attributes (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (run_id, name)
) WITHOUT ROWID;
CREATE TABLE metrics (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  step INTEGER NOT NULL,
  name TEXT NOT NULL,
  value REAL NOT NULL,
  PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;
CREATE TABLE evals (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  step INTEGER NOT NULL,
  mode TEXT NOT NULL,
  domain TEXT NOT NULL,
  tokens INTEGER NOT NULL,
  loss REAL NOT NULL,
  ppl REAL NOT NULL,
  PRIMARY KEY (run_id, step, mode, domain)
) WITHOUT ROWID;
CREATE TABLE routing_stats (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  step INTEGER NOT NULL,
  mode TEXT NOT NULL,
  layer INTEGER NOT NULL,
  domain TEXT NOT NULL,
  expert INTEGER NOT NULL,
  weight_mean REAL NOT NULL,
  activated_frac REAL NOT NULL,
  tokens INTEGER NOT NULL,
  PRIMARY KEY (run_id, step, mode, layer, domain, expert)
) WITHOUT ROWID;
)sql",
      // 2: who is training a run, so that a rerun can tell a live run from one whose worker died.
      R"sql(
ALTER TABLE runs ADD COLUMN worker_pid INTEGER;
ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
)sql",
      // 3: per-layer routing summaries, and the views behind `lory report`.
      R"sql(
CREATE TABLE routing_layer_stats (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  step INTEGER NOT NULL,
  mode TEXT NOT NULL,
  layer INTEGER NOT NULL,
  experts INTEGER NOT NULL,
  entropy REAL NOT NULL,
  load_imbalance REAL NOT NULL,
  unused_experts INTEGER NOT NULL,
  specialisation REAL NOT NULL,
  tokens INTEGER NOT NULL,
  PRIMARY KEY (run_id, step, mode, layer)
) WITHOUT ROWID;

-- Every run with the keys that group and pair runs: the cell without its seed (for means over
-- seeds), and the cell without its router (to pair an MoE run with the dense run that shares
-- everything else).
CREATE VIEW run_cells AS
SELECT r.id AS run_id, x.name AS experiment, r.label, r.status, r.seed, r.cell_hash,
       json_extract(r.config, '$.router.plugin') AS router,
       json_extract(r.config, '$.batcher.plugin') AS batcher,
       trim(replace(r.label, 'seed=' || r.seed, '')) AS group_label,
       json_remove(r.config, '$.trainer.seed') AS group_key,
       json_remove(r.config, '$.router') AS baseline_key
FROM runs r JOIN experiments x ON x.id = r.experiment_id;

-- The last evaluation of each run, every mode and domain.
CREATE VIEW final_evals AS
SELECT c.run_id, c.experiment, c.label, c.group_label, c.router, c.batcher, c.seed, v.mode, v.domain, v.step,
       v.tokens, v.loss, v.ppl
FROM run_cells c JOIN evals v ON v.run_id = c.run_id
WHERE v.step = (SELECT max(step) FROM evals WHERE run_id = c.run_id);

-- Each MoE run against the dense run of the same experiment that shares everything but the router
-- (same seed, data, model, batcher, trainer, eval): the paper's relative change, as an improvement
-- (dense - moe) / dense, so +0.139 is Books' +13.9%.
CREATE VIEW moe_vs_dense AS
SELECT m.experiment, m.run_id, m.label, m.group_label, m.router, m.batcher, m.seed, fm.mode, fm.domain,
       fm.ppl AS moe_ppl, fd.ppl AS dense_ppl, d.run_id AS dense_run_id,
       (fd.ppl - fm.ppl) / fd.ppl AS relative_improvement
FROM run_cells m
JOIN run_cells d ON d.experiment = m.experiment AND d.router = 'dense' AND d.baseline_key = m.baseline_key
JOIN final_evals fm ON fm.run_id = m.run_id
JOIN final_evals fd ON fd.run_id = d.run_id AND fd.mode = fm.mode AND fd.domain = fm.domain
WHERE m.router != 'dense';

-- Expert x domain routing weights of each run's last evaluation, per layer.
CREATE VIEW expert_domain_matrix AS
SELECT c.run_id, c.experiment, c.label, s.mode, s.layer, s.domain, s.expert, s.weight_mean, s.activated_frac, s.step
FROM run_cells c JOIN routing_stats s ON s.run_id = c.run_id
WHERE s.step = (SELECT max(step) FROM routing_stats WHERE run_id = c.run_id);

-- The same numbers over seeds: mean, sample standard deviation and n of every cell group.
CREATE VIEW final_evals_over_seeds AS
SELECT c.experiment, c.group_label, min(c.router) AS router, min(c.batcher) AS batcher, f.mode, f.domain,
       avg(f.ppl) AS ppl_mean,
       CASE WHEN count(*) > 1 THEN sqrt(max(0, (sum(f.ppl * f.ppl) - sum(f.ppl) * sum(f.ppl) / count(*)) / (count(*) - 1)))
            ELSE NULL END AS ppl_std,
       count(*) AS n
FROM final_evals f JOIN run_cells c ON c.run_id = f.run_id
GROUP BY c.experiment, c.group_key, f.mode, f.domain;

CREATE VIEW moe_vs_dense_over_seeds AS
SELECT m.experiment, m.group_label, min(m.router) AS router, min(m.batcher) AS batcher, m.mode, m.domain,
       avg(m.relative_improvement) AS improvement_mean,
       CASE WHEN count(*) > 1 THEN sqrt(max(0, (sum(m.relative_improvement * m.relative_improvement) -
                                                sum(m.relative_improvement) * sum(m.relative_improvement) / count(*)) /
                                               (count(*) - 1)))
            ELSE NULL END AS improvement_std,
       count(*) AS n
FROM moe_vs_dense m JOIN run_cells c ON c.run_id = m.run_id
GROUP BY m.experiment, c.group_key, m.mode, m.domain;
)sql",
      // 4: an MoE run pairs with the dense run that differs only in its router and in the trainer
      // keys that act on a router alone (the dense warm-up and the upcycling recipe: a dense run
      // ignores them), so that `lory-8-copy` is compared with the same dense run as `lory-8`.
      R"sql(
DROP VIEW run_cells;
CREATE VIEW run_cells AS
SELECT r.id AS run_id, x.name AS experiment, r.label, r.status, r.seed, r.cell_hash,
       json_extract(r.config, '$.router.plugin') AS router,
       json_extract(r.config, '$.batcher.plugin') AS batcher,
       trim(replace(r.label, 'seed=' || r.seed, '')) AS group_label,
       json_remove(r.config, '$.trainer.seed') AS group_key,
       json_remove(r.config, '$.router', '$.trainer.dense_warmup_fraction', '$.trainer.upcycling_optimizer',
                   '$.trainer.upcycling_lr_rewarmup_fraction') AS baseline_key
FROM runs r JOIN experiments x ON x.id = r.experiment_id;
)sql",
      // 5: in-context task accuracy (`lory eval-tasks`), one row per run, task and routing rule.
      R"sql(
CREATE TABLE task_evals (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  task TEXT NOT NULL,
  routing TEXT NOT NULL,
  step INTEGER NOT NULL,
  task_sha256 TEXT NOT NULL,
  examples INTEGER NOT NULL,
  chance REAL NOT NULL,
  accuracy REAL NOT NULL,
  accuracy_stderr REAL,
  accuracy_norm REAL NOT NULL,
  accuracy_norm_stderr REAL,
  gold_loss_per_token REAL NOT NULL,
  truncated INTEGER NOT NULL,
  evaluated_at TEXT NOT NULL,
  code_version TEXT NOT NULL,
  PRIMARY KEY (run_id, task, routing)
) WITHOUT ROWID;

-- Task accuracy over seeds: mean, sample standard deviation and n of every cell group. Rows for
-- one task name with different task files (task_sha256) are never averaged together.
CREATE VIEW task_evals_over_seeds AS
SELECT c.experiment, c.group_label, min(c.router) AS router, min(c.batcher) AS batcher, t.task, t.task_sha256,
       t.routing, min(t.examples) AS examples, avg(t.chance) AS chance,
       avg(t.accuracy) AS accuracy_mean,
       CASE WHEN count(*) > 1 THEN sqrt(max(0, (sum(t.accuracy * t.accuracy) - sum(t.accuracy) * sum(t.accuracy) / count(*)) / (count(*) - 1)))
            ELSE NULL END AS accuracy_std,
       avg(t.accuracy_norm) AS accuracy_norm_mean,
       CASE WHEN count(*) > 1 THEN sqrt(max(0, (sum(t.accuracy_norm * t.accuracy_norm) - sum(t.accuracy_norm) * sum(t.accuracy_norm) / count(*)) / (count(*) - 1)))
            ELSE NULL END AS accuracy_norm_std,
       avg(t.accuracy_stderr) AS accuracy_stderr_mean,
       count(*) AS n
FROM task_evals t JOIN run_cells c ON c.run_id = t.run_id
GROUP BY c.experiment, c.group_key, t.task, t.task_sha256, t.routing;
)sql",
      // 6: the dense baseline is a declared role of its router (lory/core/router_roles.h), recorded
      // per run in run_attributes.router_roles, not the plugin name "dense" (runs recorded before
      // knew only the name: theirs is filled in from it); the texts of included experiment files;
      // and stored configs without the test-only trainer keys.
      R"sql(
-- The test-only trainer keys left the config (they are the LORY_TEST_FAULT variable now): stored
-- configs lose them too, so that old and new runs of one cell group share their group keys. A
-- cell's identity (cell_hash) does not change (CellConfig::identity).
UPDATE runs SET config = json_remove(config, '$.trainer.inject_nan_at_step', '$.trainer.inject_nan_grad_at_step');

INSERT OR IGNORE INTO run_attributes (run_id, name, value)
SELECT id, 'router_roles', CASE WHEN json_extract(config, '$.router.plugin') = 'dense' THEN 'dense_baseline' ELSE '' END
FROM runs;

DROP VIEW IF EXISTS run_cells;
CREATE VIEW run_cells AS
SELECT r.id AS run_id, x.name AS experiment, r.label, r.status, r.seed, r.cell_hash,
       json_extract(r.config, '$.router.plugin') AS router,
       json_extract(r.config, '$.batcher.plugin') AS batcher,
       trim(replace(r.label, 'seed=' || r.seed, '')) AS group_label,
       json_remove(r.config, '$.trainer.seed') AS group_key,
       json_remove(r.config, '$.router', '$.trainer.dense_warmup_fraction', '$.trainer.upcycling_optimizer',
                   '$.trainer.upcycling_lr_rewarmup_fraction') AS baseline_key,
       EXISTS (SELECT 1 FROM run_attributes a WHERE a.run_id = r.id AND a.name = 'router_roles' AND
               ',' || a.value || ',' LIKE '%,dense_baseline,%') AS is_dense_baseline
FROM runs r JOIN experiments x ON x.id = r.experiment_id;

DROP VIEW IF EXISTS moe_vs_dense;
CREATE VIEW moe_vs_dense AS
SELECT m.experiment, m.run_id, m.label, m.group_label, m.router, m.batcher, m.seed, fm.mode, fm.domain,
       fm.ppl AS moe_ppl, fd.ppl AS dense_ppl, d.run_id AS dense_run_id,
       (fd.ppl - fm.ppl) / fd.ppl AS relative_improvement
FROM run_cells m
JOIN run_cells d ON d.experiment = m.experiment AND d.is_dense_baseline AND d.baseline_key = m.baseline_key
JOIN final_evals fm ON fm.run_id = m.run_id
JOIN final_evals fd ON fd.run_id = d.run_id AND fd.mode = fm.mode AND fd.domain = fm.domain
WHERE NOT m.is_dense_baseline;

-- The files an experiment file includes (directly or not), with their text at its last run: with
-- experiments.source_toml, every line its cells were resolved from.
CREATE TABLE experiment_files (
  experiment_id INTEGER NOT NULL REFERENCES experiments(id),
  path TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (experiment_id, path)
) WITHOUT ROWID;
)sql",
  };
  return list;
}

}  // namespace lory
