# MetaStore: `make run` starts a single member, `make test` runs the whole suite.
# Both install missing system packages first. Build output lives outside the clone so repeated
# runs (and CI on a fresh clone) reuse it.

CACHE_DIR ?= $(HOME)/.cache/metastore
export CARGO_TARGET_DIR ?= $(CACHE_DIR)/target
CARGO ?= cargo
BIN := $(CARGO_TARGET_DIR)/release/metastore
DATA_DIR ?= ./data/n1.etcd
# etcd e2e tests that must pass with metastore standing in for etcd (issue by issue).
E2E_KV := TestCtlV3Put$$|TestCtlV3PutNoTLS$$|TestCtlV3PutIgnoreValue$$|TestCtlV3Get$$|TestCtlV3GetNoTLS$$|TestCtlV3GetFormat$$|TestCtlV3GetRev$$|TestCtlV3GetKeysOnly$$|TestCtlV3Del$$|TestCtlV3DelNoTLS$$|TestCtlV3TxnInteractiveSuccess$$|TestCtlV3TxnInteractiveSuccessNoTLS$$|TestCtlV3TxnInteractiveFail$$|TestCtlV3Compact$$|TestCtlV3CompactPhysical$$
E2E_WATCH_LEASE := TestCtlV3Watch$$|TestCtlV3WatchNoTLS$$|TestCtlV3WatchInteractive$$|TestCtlV3WatchInteractiveNoTLS$$|TestCtlV3Lease(GrantTimeToLive|GrantLeases|TestTimeToLiveExpired|KeepAlive|KeepAliveOnce|Revoke)(NoTLS|PeerTLS)?$$|TestCtlV3PutIgnoreLease$$|TestCtlV3Lock$$|TestCtlV3Elect$$
E2E_PEER_TLS := TestCtlV3(Put|Get|Del|TxnInteractiveSuccess|Watch|WatchInteractive)PeerTLS$$
E2E_CLUSTER := TestCtlV3Member(List|Remove|Add|Update)(NoTLS|PeerTLS)?$$|TestCtlV3MemberAddForLearner$$|TestCtlV3GetQuorum$$|TestCtlV3EndpointStatus$$|TestCtlV3EndpointHealth$$
E2E_CLIENT_TLS := TestCtlV3(Put|Get|Del|TxnInteractiveSuccess|Watch|WatchInteractive)ClientTLS$$|TestCtlV3(Put|Get)ClientAutoTLS$$|TestCtlV3PutClientTLSFlagByEnv$$|TestCtlV3Lease(GrantTimeToLive|GrantLeases|TestTimeToLiveExpired|KeepAlive|KeepAliveOnce|Revoke)Client(Auto)?TLS$$|TestCtlV3Member(List|Remove|Add|Update)Client(Auto)?TLS$$|TestCtlV3DialWithHTTPScheme$$|TestCtlV3GetRevokedCRL$$|TestCtlV3MoveLeaderScenarios$$|TestCtlV3AuthCertCN(AndUsername|AndUsernameNoPassword|WithWithConcurrentOperation)?$$|TestCtlV3(Role|User)(Add|List|Delete|Passwd)Client(Auto)?TLS$$
# Every auth, user and role test over plain connections (the client-TLS ones are in E2E_CLIENT_TLS).
E2E_AUTH := TestCtlV3Auth(Enable|Disable|WriteKey|RoleUpdate|UserDeleteDuringOps|RoleRevokeDuringOps|Txn|TxnJWT|PrefixPerm|MemberAdd|MemberRemove|MemberUpdate|RevokeWithDelete|InvalidMgmt|FromKeyPerm|AndWatch|AndWatchJWT|LeaseTestKeepAlive|LeaseTestTimeToLiveExpired|LeaseGrantLeases|LeaseGrantLeasesJWT|LeaseRevoke|RoleGet|UserGet|RoleList|Defrag|Snapshot|SnapshotJWT|EndpointHealth|JWTExpire|TestCacheReload)$$|TestCtlV3(Role|User)(Add|List|Delete|Passwd|Grant)(NoTLS|PeerTLS|Timeout)?$$
E2E_OPS := TestCtlV3Alarm$$|TestCtlV3Defrag$$|TestCtlV3EndpointHashKV$$
E2E_SNAPSHOT := TestCtlV3Snapshot$$|TestCtlV3SnapshotCorrupt$$|TestCtlV3SnapshotStatusBeforeRestore$$
E2E_TESTS ?= $(E2E_KV)|$(E2E_WATCH_LEASE)|$(E2E_PEER_TLS)|$(E2E_CLUSTER)|$(E2E_AUTH)|$(E2E_CLIENT_TLS)|$(E2E_OPS)|$(E2E_SNAPSHOT)
# Subtest filters apply to every matched test, so scenario subtests run on their own (none now).
E2E_SUBTESTS ?=
RUN ?= $(E2E_TESTS)

.PHONY: deps build run test test-unit test-compat test-etcd-e2e test-robustness test-disk-faults bench bench-scale bench-layers lint fmt clean-cache

deps:
	@tools/install-deps.sh

build: deps
	$(CARGO) build --release --bins

run: build
	mkdir -p $(dir $(DATA_DIR))
	$(BIN) --name n1 --data-dir $(DATA_DIR) \
	  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
	  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	  --initial-cluster n1=http://127.0.0.1:2380

# Everything: unit, process, etcdctl, crash, differential and etcd e2e tests.
test: build
	$(CARGO) test --release
	$(MAKE) --no-print-directory test-compat
	$(MAKE) --no-print-directory test-etcd-e2e

test-unit: deps
	$(CARGO) test --release --lib

# The same etcdctl scripts against real etcd 3.4.23 and MetaStore; outputs must be equal.
test-compat: build
	tools/compat/diff.sh /usr/bin/etcd $(BIN)

# etcd's own e2e suite with metastore as the etcd binary: make test-etcd-e2e RUN='TestCtlV3Put$$'
test-etcd-e2e: build
	tools/etcd-e2e.sh --etcd $(BIN) --run '$(RUN)'
	@if [ '$(RUN)' = '$(E2E_TESTS)' ] && [ -n '$(E2E_SUBTESTS)' ]; then tools/etcd-e2e.sh --etcd $(BIN) --run '$(E2E_SUBTESTS)'; fi

# The robustness suite (tools/robustness): every scenario (a fault kind each, ROBUSTNESS_SECONDS of
# traffic) on 3 MetaStore members, then the same on 3 members of real etcd 3.4.23; writes
# $(ROBUSTNESS_OUT). About 20 minutes with the default 30 s (both servers); ROBUSTNESS_SCENARIOS=kill-leader,... runs some.
ROBUSTNESS_SECONDS ?= 30
ROBUSTNESS_OUT ?= docs/robustness.md
ROBUSTNESS_SCENARIOS ?=
test-robustness: build
	$(CARGO_TARGET_DIR)/release/metastore-robustness --target MetaStore=$(BIN) --target etcd=/usr/bin/etcd \
	  --duration $(ROBUSTNESS_SECONDS) --out $(ROBUSTNESS_OUT) $(if $(ROBUSTNESS_SCENARIOS),--scenarios $(ROBUSTNESS_SCENARIOS)) \
	  --command 'make test-robustness ROBUSTNESS_SECONDS=$(ROBUSTNESS_SECONDS)$(if $(ROBUSTNESS_SCENARIOS), ROBUSTNESS_SCENARIOS=$(ROBUSTNESS_SCENARIOS))'

# Disk faults (tests/disk_faults.rs): a member built with the `fault-injection` feature, whose disk
# fails a write or an fsync on command, must exit non-zero and keep every acknowledged write. A
# second build in its own target dir ($(FAULTS_TARGET_DIR)), so the normal binary stays fault-free;
# the first run compiles every dependency again (seed it with a copy of $(CARGO_TARGET_DIR) to
# save that), later ones only MetaStore. Not part of `make test`.
FAULTS_TARGET_DIR ?= $(CARGO_TARGET_DIR)-faults
test-disk-faults: deps
	CARGO_TARGET_DIR=$(FAULTS_TARGET_DIR) $(CARGO) test --release --features fault-injection --test disk_faults

# etcd 3.4.23 and MetaStore side by side (tools/bench/compare.py), about 25 minutes; about 5 with
# BENCH_QUICK=1. Prints the tables and writes them to $(BENCH_OUT), raw reports to $(BENCH_JSON).
# BENCH_SECTIONS=scan (comma-separated: floor,single,cluster,scale,scan,auth,gateway,defrag) runs only those sections
# and replaces only their part of $(BENCH_OUT) (the layers benchmark then does not run);
# BENCH_SECTIONS=auth is the auth note (about 7 minutes, 5 with BENCH_QUICK=1).
BENCH_QUICK ?=
BENCH_SECTIONS ?=
BENCH_OUT ?= docs/benchmarks.md
BENCH_JSON ?= $(CACHE_DIR)/bench/last-run.json
bench: build
	mkdir -p $(dir $(BENCH_JSON))
	python3 tools/bench/compare.py --bench $(CARGO_TARGET_DIR)/release/metastore-bench --metastore $(BIN) \
	  --etcd /usr/bin/etcd --out $(BENCH_OUT) --json-out $(BENCH_JSON) $(if $(BENCH_QUICK),--quick) \
	  $(if $(BENCH_SECTIONS),--sections $(BENCH_SECTIONS))
	$(if $(BENCH_SECTIONS),,$(MAKE) --no-print-directory bench-layers)

# The scale run on its own, at SCALE_KEYS keys (16 B keys, 256 B values; both servers with an 8 GiB
# quota): load rate, peak RSS, data-dir size, restart time, point-get and 1,000-key prefix latency.
# Written as its own section of $(BENCH_OUT), beside the 1M-key one of `make bench`. Measured on
# a busy 2-core machine: SCALE_KEYS=2000000 took 3 minutes in all (loads of 35-50 s each); the
# time grows about linearly with the keys, and etcd's RSS by about 1.2 GiB per million keys.
SCALE_KEYS ?= 10000000
bench-scale: build
	mkdir -p $(dir $(BENCH_JSON))
	python3 tools/bench/compare.py --bench $(CARGO_TARGET_DIR)/release/metastore-bench --metastore $(BIN) \
	  --etcd /usr/bin/etcd --out $(BENCH_OUT) --json-out $(CACHE_DIR)/bench/scale-run.json \
	  --sections scale --scale-keys $(SCALE_KEYS)

# Metadata layers (client/examples/layers_bench.rs): index lookups over 1M entries, MetaStore and
# etcd prefix ranges vs Redis KEYS + SMEMBERS, and flush commits/s with 10 flushers; about 2 minutes
# (BENCH_QUICK=1: 100k entries, seconds). Writes $(LAYERS_BENCH_OUT).
LAYERS_BENCH_OUT ?= docs/layers-benchmark.md
bench-layers: build
	$(CARGO) build --release -p metastore-client --example layers_bench
	$(CARGO_TARGET_DIR)/release/examples/layers_bench --metastore $(BIN) --etcd /usr/bin/etcd \
	  --redis-server /usr/bin/redis-server --out $(LAYERS_BENCH_OUT) $(if $(BENCH_QUICK),--quick)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

clean-cache:
	rm -rf $(CACHE_DIR)
