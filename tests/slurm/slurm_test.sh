#!/usr/bin/env bash
# Slurm tests of `lory run --launcher slurm`.
#   slurm_test.sh emit BUILD SOURCE     the emitted sbatch scripts, checked without Slurm (always runs)
#   slurm_test.sh cluster BUILD SOURCE  a real single-node Slurm (munged, slurmctld, slurmd started here on
#                                       localhost) runs a 2-cell grid; the merged store must hold both runs.
#                                       Exits 77 (ctest: skipped) with the reason where it cannot start.
set -euo pipefail
mode=$1
build=$2
source=$3
work=$(mktemp -d)
cleanup() {
  for pidfile in "$work"/slurmd.pid "$work"/slurmctld.pid "$work"/munged.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2> /dev/null || true
  done
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT
skip() {
  echo "SKIPPED: $*"
  exit 77
}

# A tiny corpus and a 2-cell experiment.
for domain in alpha beta; do
  for i in $(seq 1 30); do
    printf '{"id": "%s/%d", "domain": "%s", "text": "%s"}\n' "$domain" "$i" "$domain" \
      "$(for w in $(seq 1 40); do printf '%s%d ' "$domain" $((w * i % 13)); done)"
  done
done > "$work/docs.jsonl"
"$build/lory-data" prepare --out "$work/corpus" --jsonl "$work/docs.jsonl" --tokenizer byte > /dev/null
cat > "$work/grid.toml" <<TOML
[experiment]
name = "slurm-grid"
[data]
corpus = "corpus"
[model]
context_length = 32
[model.transformer]
d_model = 32
n_layers = 2
n_heads = 2
[trainer]
steps = 4
batch_size = 4
log_every = 2
[eval]
every = 4
tokens_per_domain = 64
[[grid.cells]]
router.plugin = "dense"
[[grid.cells]]
router.plugin = "lory"
[router.lory]
experts = 4
segment_length = 8
TOML
db="$work/results/lory.sqlite"

if [ "$mode" = emit ]; then
  "$build/lory" run "$work/grid.toml" --launcher slurm --emit-only --partition debug --time 00:10:00 --db "$db"
  folder="$work/results/slurm/slurm-grid"
  bash -n "$folder/cells.sbatch"
  bash -n "$folder/merge.sbatch"
  grep -q '^#SBATCH --array=0-1$' "$folder/cells.sbatch"
  grep -q '^#SBATCH --partition=debug$' "$folder/cells.sbatch"
  grep -q '^#SBATCH --time=00:10:00$' "$folder/merge.sbatch"
  grep -q 'run-cell .*grid.toml.* --cell "\$cell" --db .*/cells/"\$cell".sqlite' "$folder/cells.sbatch"
  grep -q "merge --into '$db'" "$folder/merge.sbatch"
  [ "$(grep -c '^cells=(' "$folder/cells.sbatch")" = 1 ]
  # Each array task must name one of the grid's cells.
  for cell in $(sed -n 's/^cells=(\(.*\) )$/\1/p' "$folder/cells.sbatch"); do
    "$build/lory" run "$work/grid.toml" --dry-run --db "$db" | grep -q "${cell:0:12}"
  done
  [ ! -e "$db" ]  # nothing was trained or submitted
  echo "emitted sbatch scripts are well formed"

  # A cell done in the target store is not submitted again.
  "$build/lory" run-cell "$work/grid.toml" --cell-index 0 --db "$db" > /dev/null
  dense_cell=$("$build/lory" run "$work/grid.toml" --dry-run --db "$db" | awk '$1 == "1" {print $2}')
  "$build/lory" run "$work/grid.toml" --launcher slurm --emit-only --db "$db" | grep -q '1 cell(s) already done'
  grep -q '^#SBATCH --array=0-0$' "$folder/cells.sbatch"
  ! grep -q "$dense_cell" "$folder/cells.sbatch"
  echo "done cells are left out of the array"

  # An outside launcher (torchrun, srun): register the cell, then run the printed worker command.
  registered=$("$build/lory" run-cell "$work/grid.toml" --cell-index 1 --db "$db" --register-only)
  echo "$registered"
  command=$(echo "$registered" | sed -n 's/^run [0-9]* ([^)]*): //p')
  [ -n "$command" ]
  case "$command" in */lory-worker\ train\ --db\ *\ --run-id\ *) ;; *) echo "unexpected: $command"; exit 1 ;; esac
  RANK=0 WORLD_SIZE=1 $command > /dev/null
  "$build/lory" query "SELECT count(*) AS done FROM runs WHERE status = 'done'" --db "$db" --csv | tail -n 1 | grep -qx 2
  echo "a registered cell trains under an outside launcher's environment"
  exit 0
fi

[ "$(id -u)" = 0 ] || skip "starting munged, slurmctld and slurmd needs root"
for program in munged slurmctld slurmd sbatch squeue; do
  command -v "$program" > /dev/null || skip "$program is not installed (scripts/setup-deps installs slurmctld, slurmd, slurm-client, munge)"
done
[ -r /etc/munge/munge.key ] || skip "no /etc/munge/munge.key"
mkdir -p "$work/state" "$work/spool"
munged --force --socket="$work/munge.socket" --pid-file="$work/munged.pid" --log-file="$work/munged.log" \
  --seed-file="$work/munged.seed" || skip "munged does not start: $(tail -n 2 "$work/munged.log" 2> /dev/null)"
port=$((17000 + RANDOM % 2000))
cat > "$work/slurm.conf" <<CONF
ClusterName=lorytest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge.socket
CredType=cred/munge
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
NodeName=localhost CPUs=$(nproc) RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"
slurmctld -f "$SLURM_CONF" || skip "slurmctld does not start: $(tail -n 3 "$work/slurmctld.log" 2> /dev/null)"
slurmd -f "$SLURM_CONF" -N localhost || skip "slurmd does not start: $(tail -n 3 "$work/slurmd.log" 2> /dev/null)"
for _ in $(seq 1 30); do
  [ "$(sinfo -h -o %T 2> /dev/null)" = idle ] && break
  sleep 1
done
[ "$(sinfo -h -o %T 2> /dev/null)" = idle ] || skip "the local Slurm node did not become idle: $(sinfo 2>&1 | tail -n 1)"

"$build/lory" run "$work/grid.toml" --launcher slurm --partition debug --time 00:10:00 --db "$db"
for _ in $(seq 1 300); do
  [ -z "$(squeue -h 2> /dev/null)" ] && break
  sleep 1
done
[ -z "$(squeue -h)" ] || { echo "jobs still queued after 5 minutes:"; squeue; exit 1; }
done_runs=$("$build/lory" query "SELECT count(*) FROM runs WHERE status = 'done'" --db "$db" --csv | tail -n 1)
if [ "$done_runs" != 2 ]; then
  echo "the merged store holds $done_runs done runs, expected 2"
  cat "$work/results/slurm/slurm-grid"/*.out || true
  exit 1
fi
rows=$("$build/lory" query "SELECT count(*) FROM evals" --db "$db" --csv | tail -n 1)
[ "$rows" -gt 0 ]
echo "Slurm ran the 2-cell grid; the merged store holds both runs ($rows evaluation rows)"
