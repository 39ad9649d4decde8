# The two commands of the README. Both create .venv if there is none and
# install odml into it (editable), so they work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	# tflite-support pins protobuf<4 but its metadata code needs only flatbuffers
	$(BIN)/python -m pip install -q --no-deps tflite-support==0.4.4
	# onnx2tf (ONNX -> TensorFlow) pins tensorflow 2.19 and numpy 1.26 exactly; it runs on the stack above
	$(BIN)/python -m pip install -q --no-deps onnx2tf==1.29.24
	@touch $(STAMP)

install: $(STAMP)

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
	$(BIN)/odml bench runs/demo/export/model_fp32.tflite runs/demo/export/model_int8.tflite --data digits --ovic --plot runs/demo/latency.png
	$(BIN)/odml compress runs/demo/model.keras --data digits --sizes 0.5,0.25 --epochs 4 --pick "latency_ms<=1" --out runs/demo/compress
	$(BIN)/odml search --space small32 --data digits --target-ms 0.3 --trials 6 --epochs 1 --out runs/demo/search

# two workers, one test file each at a time (module fixtures and loopback servers stay within a file)
test: $(STAMP)
	@command -v adb >/dev/null || echo "note: adb is not installed: the 7 tests of phones over adb (tests/test_adb.py) will be skipped; Debian: apt-get install adb"
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# the fast tier: unit tests of specs, families, parsers, run folders and files (under two minutes)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m fast

clean:
	rm -rf runs .pytest_cache
