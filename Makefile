# The two commands of the README. Both create .venv if there is none and
# install odml into it (editable), so they work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.test-extras

.PHONY: demo test test-fast install clean

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Test-only, optional: tflite-support's MetadataDisplayer reads odml's .tflite metadata back in one test (the
# ecosystem's own reader as a cross-check). It pins protobuf<4, so it cannot be a declared dependency: it goes in
# with --no-deps (its metadata code needs only flatbuffers). odml itself never imports it.
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --no-deps tflite-support==0.4.4
	@touch $(TEST_STAMP)

# The main job, end to end on the embedded digits data (about five minutes on 2 cores):
# show the model, train it (accuracy, parameters, MACs), export fp32 and int8
# TFLite with metadata and check their parity with the Keras model, then
# benchmark both on this host and score them by the OVIC rule; compress the
# trained model into two distilled int8 students; last, a short architecture
# search (6 candidates, latency measured on this host). Each run starts afresh.
demo: $(STAMP)
	@rm -rf runs/demo && mkdir -p runs/demo
	$(BIN)/odml zoo show mobilenet_edgetpu_v2_tiny --width 0.5 --input-size 32 --classes 10 --out runs/demo/spec.json
	$(BIN)/odml train runs/demo/spec.json --data digits --epochs 12 --out runs/demo/model.keras
	$(BIN)/odml export runs/demo/model.keras --data digits --quantize fp32,int8 --out runs/demo/export
	$(BIN)/odml bench runs/demo/export/model_fp32.tflite runs/demo/export/model_int8.tflite --data digits --ovic --plot runs/demo/latency.png --report runs/demo/bench
	$(BIN)/odml compress runs/demo/model.keras --data digits --sizes 0.5,0.25 --epochs 4 --pick "latency_ms<=1" --out runs/demo/compress
	$(BIN)/odml search --space small32 --data digits --target-ms 0.3 --trials 6 --epochs 1 --out runs/demo/search

# the fast tier first (a broken build fails in about a minute; on two workers, its tests are independent), then the
# rest on two workers, one test file each at a time (module fixtures and loopback servers stay within a file)
test: $(TEST_STAMP)
	@command -v adb >/dev/null || echo "note: adb is not installed: the tests of phones over adb (tests/test_adb.py) will be skipped (and fail under CI=true); Debian: apt-get install adb"
	$(BIN)/python -m pytest -q -n 2 -m fast
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not fast"

# the fast tier: unit tests of specs, families, parsers, run folders and files (under two minutes)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m fast

clean:
	rm -rf runs .pytest_cache
