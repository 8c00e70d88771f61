"""Every mistake a user can make in a spec gets one clear message: `file:line:col`,
the layer, what was expected and what was found, and a hint where one exists.
Each case is checked through the library and through the CLI (exit 1, the
message on stderr, no traceback).
"""

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import cnngraph
from cnngraph.cli import main
from cnngraph.errors import SpecError

BLOCK = """\
input: [3, 8, 8]
blocks:
  unit:
    args: {out: ~, k: 1}
    layers:
      - conv: {out: %s, kernel: $k}
layers:
  - unit: %s
"""

# (id, spec text, regex for the message after "FILE:")
CASES = [
    # ---- YAML itself
    ("yaml-unclosed-brace", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3\n  - relu\n",
     (r"5:1: YAML syntax error: expected ',' or '\}', but got the end of the file \(while parsing a flow mapping "
     r"that starts at line 3, column 11\) — a '\{' or '\[' is not closed, or a ',' is missing")),
    ("yaml-indentation", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3}\n   - relu\n",
     (r"4:4: YAML syntax error: expected the end of an indented block, but found a new '-' item .*"
     r"— check the indentation")),
    ("yaml-tab", "input: [3, 8, 8]\nlayers:\n\t- relu\n",
     r"3:1: YAML syntax error: found character '\\t' that cannot start any token — indent with spaces, not tabs"),
    ("yaml-duplicate-key", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3, out: 4}\n",
     r"3:31: duplicate key 'out' \(first at line 3, column 12\)"),
    ("unsafe-tag-apply", "input: !!python/object/apply:os.system ['echo owned']\nlayers: [relu]\n",
     (r"1:8: expected plain YAML data \(mappings, lists, numbers, strings\), got the tag "
     r"'!!python/object/apply:os.system' — cnngraph never constructs objects from a spec")),
    ("unsafe-tag-object", "input: [3, 8, 8]\nlayers:\n  - !!python/object:builtins.dict {}\n",
     r"3:5: expected plain YAML data .*got the tag '!!python/object:builtins.dict'"),
    ("unsafe-tag-scalar", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: !!python/name:os.system x}\n",
     r"3:28: expected plain YAML data .*got the tag '!!python/name:os.system'"),
    ("custom-tag", "input: !shape [3, 8, 8]\nlayers: [relu]\n",
     r"1:8: expected plain YAML data .*got the tag '!shape'"),
    # ---- document structure
    ("empty-file", "", r"1:1: expected a mapping with 'input' and 'layers', got an empty file"),
    ("top-is-a-list", "- relu\n", r"1:1: expected a mapping with 'input' and 'layers', got a list"),
    ("top-key-typo", "input: [3, 8, 8]\nlayer: [relu]\n",
     (r"2:1: unknown top-level key 'layer' \(expected name, description, input, output, preprocess, blocks, "
     r"layers\) — did you mean 'layers'\?")),
    ("missing-input", "layers: [relu]\n", r"1:1: missing 'input' \(the input shape without batch"),
    ("missing-layers", "input: [3, 8, 8]\n", r"1:1: missing 'layers' \(the list of layers\)"),
    ("layers-not-a-list", "input: [3, 8, 8]\nlayers: relu\n",
     r"2:9: expected 'layers' to be a list, got the string 'relu' — write one '- kind'"),
    ("empty-layers", "input: [3, 8, 8]\nlayers: []\n", r"2:9: expected at least one layer, got an empty list"),
    ("two-kinds-in-one-entry", "input: [3, 8, 8]\nlayers:\n  - conv: {kernel: 3}\n    out: 8\n",
     r"3:5: expected one layer kind per entry, got keys conv, out — put attributes inside the kind"),
    ("empty-entry", "input: [3, 8, 8]\nlayers:\n  - {}\n",
     r"3:5: expected a layer entry \('relu' or '\{conv: \{...\}\}'\), got an empty mapping"),
    ("attrs-not-a-mapping", "input: [3, 8, 8]\nlayers:\n  - conv: 3\n",
     r"3:11: expected a mapping of attributes after 'conv:', got the number 3 — write 'conv: \{...\}'"),
    # ---- input shape
    ("input-string", "input: 3x224x224\nlayers: [relu]\n",
     (r"1:8: expected 'input' as \[channels, \*spatial\] with 0 to 3 spatial dims, got the string '3x224x224' — "
     r"e.g. \[3, 224, 224\]")),
    ("input-4-spatial-dims", "input: [3, 2, 2, 2, 2]\nlayers: [relu]\n",
     r"1:8: expected 'input' as \[channels, \*spatial\] with 0 to 3 spatial dims, got 5 sizes"),
    ("input-zero", "input: [3, 0, 32]\nlayers: [relu]\n", (r"1:12: expected positive integer sizes in 'input', "
                                                           r"got the number 0")),
    ("input-too-large", "input: [3, 100000, 100000]\nlayers: [relu]\n",
     r"1:8: expected at most 4294967296 input elements per sample, got 30000000000 \(too large to be sane\)"),
    # ---- kinds and attributes
    ("unknown-kind", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3}\n  - rleu\n",
     r"4:5: unknown layer kind 'rleu' — did you mean 'relu'\?"),
    ("unknown-attribute", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernal: 3}\n",
     (r"3:20: layer 'conv1' \(conv\): unknown attribute 'kernal' \(expected out, kernel, stride, padding, "
     r"dilation, groups, bias\) — did you mean 'kernel'\?")),
    ("missing-attribute", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8}\n",
     r"3:5: layer 'conv1' \(conv\): missing required attribute 'kernel' \(kernel size"),
    ("wrong-type-string", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3x3}\n",
     (r"3:28: layer 'conv1' \(conv\): attribute 'kernel': expected a positive integer or a list of them, "
     r"got '3x3'")),
    ("wrong-type-float", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 2.5, kernel: 3}\n",
     r"3:17: layer 'conv1' \(conv\): attribute 'out': expected a positive integer, got 2.5$"),
    ("wrong-type-bool", "input: [3, 8, 8]\nlayers:\n  - maxpool: {kernel: 2, ceil_mode: 1}\n",
     r"3:37: layer 'maxpool1' \(maxpool\): attribute 'ceil_mode': expected true or false, got 1"),
    ("wrong-choice", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 3, groups: dw}\n",
     r"3:39: layer 'conv1' \(conv\): attribute 'groups': expected a positive integer or 'depthwise', got 'dw'"),
    ("padding-word", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 3, padding: full}\n",
     (r"3:40: layer 'conv1' \(conv\): attribute 'padding': expected an integer, a list, 'same' or 'valid', "
     r"got 'full'")),
    ("zero-kernel", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 0}\n",
     r"3:28: layer 'conv1' \(conv\): attribute 'kernel': expected a positive integer or a list of them, got 0"),
    ("negative-out", "input: [3, 8, 8]\nlayers:\n  - conv: {out: -8, kernel: 3}\n",
     r"3:17: layer 'conv1' \(conv\): attribute 'out': expected a positive integer, got -8"),
    ("negative-padding", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3, padding: -1}\n",
     r"3:40: layer 'conv1' \(conv\): attribute 'padding': expected a non-negative integer, got -1"),
    ("probability", "input: [3, 8, 8]\nlayers:\n  - dropout: {p: 1.5}\n",
     r"3:18: layer 'dropout1' \(dropout\): attribute 'p': expected a number <= 1.0, got 1.5"),
    ("too-large-attribute", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 100000000, kernel: 3}\n",
     (r"3:17: layer 'conv1' \(conv\): attribute 'out': expected a positive integer of at most 1048576, "
     r"got 100000000 \(too large to be sane\)")),
    ("too-large-tensor", "input: [3, 16384, 16384]\nlayers:\n  - conv: {out: 64, kernel: 3}\n",
     (r"3:5: layer 'conv1' \(conv2d\): expected at most 4294967296 elements per sample, got 17175675136 for "
     r"shape \(64, 16382, 16382\) \(too large to be sane\)")),
    ("too-many-parameters", "input: [3, 1024, 1024]\nlayers:\n  - flatten\n  - linear: {out: 100000}\n",
     r"4:5: layer 'linear1' \(linear\): expected at most 4294967296 parameters per layer, got 314572900000 "
     r"\(too large to be sane\) — the input is \(3145728,\)"),
    ("pad-same", "input: [3, 8, 8]\nlayers:\n  - pad: {padding: same}\n",
     r"3:20: layer 'pad1' \(pad\): attribute 'padding': expected an integer, a list or 'valid', got 'same' — "
     r"'same' needs a kernel and stride"),
    # ---- shapes
    ("kernel-too-large", ("input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3}\n  - maxpool: {kernel: 2}\n"
                         "  - conv: {out: 8, kernel: 5}\n"),
     (r"5:28: layer 'conv2' \(conv2d\): kernel 5 \(dilation 1, extent 5\) is larger than the padded input 3 along "
     r"spatial dim 0 — reduce the kernel or add padding")),
    ("kernel-dims", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: [3, 3, 3]}\n",
     r"3:28: layer 'conv1' \(conv2d\): attribute 'kernel': expected 1 or 2 values for a 2D input, got 3"),
    ("padding-dims", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3, padding: [1, 1, 1]}\n",
     r"3:40: layer 'conv1' \(conv2d\): attribute 'padding': expected 1 or 2 entries for a 2D input, got 3"),
    ("groups-do-not-divide", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3, groups: 2}\n",
     (r"3:39: layer 'conv1' \(conv2d\): groups=2 does not divide the 3 input channels — the network input has "
     r"shape \(3, 8, 8\)")),
    ("groups-after-a-layer", ("input: [3, 8, 8]\nlayers:\n  - conv: {out: 6, kernel: 1}\n"
                             "  - conv: {out: 8, kernel: 3, groups: 4}\n"),
     (r"4:39: layer 'conv2' \(conv2d\): groups=4 does not divide the 6 input channels — the previous layer "
     r"'conv1' outputs shape \(6, 8, 8\)")),
    ("add-channels", ("input: [3, 8, 8]\nlayers:\n  - conv: {name: a, out: 8, kernel: 3, padding: 1}\n"
                     "  - conv: {name: b, from: input, out: 16, kernel: 3, padding: 1}\n  - add: {from: [a, b]}\n"),
     (r"5:5: layer 'add1' \(add\): expected inputs whose shapes broadcast \(equal sizes, or 1\), got \(8, 8, 8\), "
     r"\(16, 8, 8\): the channels differ \(8 vs 16\) — the shortcut needs a 1x1 projection")),
    ("concat-spatial", ("input: [3, 8, 8]\nlayers:\n  - conv: {name: a, out: 8, kernel: 3}\n"
                       "  - conv: {name: b, from: input, out: 8, kernel: 5}\n  - concat: {from: [a, b]}\n"),
     (r"5:5: layer 'concat1' \(concat\): expected inputs that differ only in channels, got shapes \(8, 6, 6\), "
     r"\(8, 4, 4\) — inputs: 'a' gives \(8, 6, 6\), 'b' gives \(8, 4, 4\)")),
    ("concat-one-input", "input: [3, 8, 8]\nlayers:\n  - concat\n",
     (r"3:5: layer 'concat1' \(concat\): expected 2 or more inputs in 'from', got 1 — write 'concat: "
     r"\{from: \[a, b\]\}'")),
    ("two-inputs-to-relu", "input: [3, 8, 8]\nlayers:\n  - relu: {name: a}\n  - relu: {from: [a, input]}\n",
     r"4:18: layer 'relu1' \(relu\): expected 1 input, got 2"),
    ("linear-on-a-map", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, kernel: 3}\n  - linear: {out: 10}\n",
     (r"4:5: layer 'linear1' \(linear\): expected a flat input \(features,\), got shape \(8, 6, 6\) — add a "
     r"'flatten' \(or a global pool and a flatten\) before it")),
    ("conv-on-a-vector", "input: [3, 8, 8]\nlayers:\n  - flatten\n  - conv: {out: 8, kernel: 3}\n",
     (r"4:5: layer 'conv1' \(conv\): expected an input with 1 to 3 spatial dims \(C, \*spatial\), got shape "
     r"\(192,\)")),
    # ---- names and references
    ("unknown-reference", ("input: [3, 8, 8]\nlayers:\n  - conv: {name: conv1, out: 8, kernel: 3}\n"
                          "  - relu: {from: cnv1}\n"),
     r"4:18: layer 'relu1' \(relu\): unknown layer 'cnv1' in 'from' — did you mean 'conv1'\?"),
    ("cyclic-reference", "input: [3, 8, 8]\nlayers:\n  - relu: {name: a, from: b}\n  - relu: {name: b, from: a}\n",
     (r"4:27: layer 'b' \(relu\): cyclic reference: a -> b -> a — 'from' must point to layers that do not "
     r"depend on this one")),
    ("duplicate-name", "input: [3, 8, 8]\nlayers:\n  - conv: {name: c, out: 8, kernel: 3}\n  - relu: {name: c}\n",
     r"4:5: layer 'c' \(relu\): duplicate layer name \(already used at line 3\)"),
    ("name-input", "input: [3, 8, 8]\nlayers:\n  - relu: {name: input}\n",
     r"3:18: layer 'input' \(relu\): expected a layer name other than 'input', got 'input' — 'input' names the "
     r"network input"),
    ("name-input-in-block", "input: [3, 8, 8]\nblocks:\n  b:\n    layers:\n      - relu: {name: input}\n"
                            "layers: [b]\n",
     r"5:22: layer 'b1.input' \(relu\): expected a layer name other than 'input', got 'input'"),
    ("numeric-name", "input: [3, 8, 8]\nlayers:\n  - relu: {name: 0.1}\n",
     r"3:18: expected a string name, got the number 0.1 — quote names that look like numbers"),
    ("unknown-output", "input: [3, 8, 8]\noutput: relu2\nlayers:\n  - relu\n",
     r"2:9: unknown layer 'relu2' in 'output' — did you mean 'relu1'\?"),
    ("unknown-block-output", "input: [3, 8, 8]\nblocks:\n  b:\n    output: fist\n"
                             "    layers: [{relu: {name: first}}, tanh]\nlayers: [b]\n",
     r"4:13: layer 'b1' \(b\): unknown layer 'fist' in the 'output' of block 'b' — did you mean 'first'\?"),
    ("repeat-zero", "input: [3, 8, 8]\nlayers:\n  - relu: {repeat: 0}\n",
     r"3:20: layer 'relu1' \(relu\): expected 'repeat' to be an integer from 1 to 10000, got the number 0"),
    ("when-not-bool", "input: [3, 8, 8]\nlayers:\n  - relu: {when: maybe}\n",
     r"3:18: layer 'relu1' \(relu\): expected true or false for 'when', got the string 'maybe'"),
    # ---- blocks and substitution
    ("block-missing-arg", BLOCK % ("$out", "{k: 3}"),
     r"8:5: layer 'unit1': missing required argument 'out' for block 'unit' — write 'unit: \{out: ...\}'"),
    ("block-unknown-arg", BLOCK % ("$out", "{out: 4, kk: 3}"),
     r"8:20: layer 'unit1': unknown argument 'kk' for block 'unit' \(expected out, k\) — did you mean 'k'\?"),
    ("block-unknown-variable", BLOCK % ("$ot", "{out: 4}"),
     r"6:21: layer 'unit1.conv1' \(conv\): unknown block argument '\$ot' — did you mean 'out'\?"),
    ("block-bad-expression", BLOCK % ("'${out * }'", "{out: 4}"),
     r"6:21: layer 'unit1.conv1' \(conv\): expected an arithmetic expression, got '\$\{out \* \}'"),
    ("block-unsafe-expression", BLOCK % ("'${__import__(1)}'", "{out: 4}"),
     (r"6:21: layer 'unit1.conv1' \(conv\): expected arithmetic on numbers and block arguments, got "
     r"'\$\{__import__\(1\)\}'")),
    ("block-fraction", BLOCK % ("'${out / 3}'", "{out: 4}"),
     (r"6:21: layer 'unit1.conv1' \(conv\): attribute 'out': expected a positive integer, got 1.333.* — "
     r"use '//' for integer division")),
    ("block-division-by-zero", BLOCK % ("'${out // 0}'", "{out: 4}"),
     r"6:21: layer 'unit1.conv1' \(conv\): cannot evaluate '\$\{out // 0\}': integer division or modulo by zero"),
    ("partial-substitution", "input: [3, 8, 8]\nlayers:\n  - conv: {name: 'conv${i}', out: 4, kernel: 3}\n",
     (r"3:18: layer 'conv1' \(conv\): expected '\$name' or '\$\{expression\}' as a whole value, got 'conv\$\{i\}' — "
     r"substitution replaces whole values only")),
    ("input-variable-at-top", "input: [3, 8, 8]\nlayers:\n  - relu: {from: $input}\n",
     (r"3:18: layer 'relu1' \(relu\): unknown block argument '\$input' — '\$input' exists only inside a block; "
     r"at the top level write 'from: input'")),
    ("block-recursion", "input: [3, 8, 8]\nblocks:\n  b:\n    layers: [relu, b]\nlayers:\n  - b\n",
     r"4:20: layer 'b1.b1' \(b\): block 'b' uses itself \(b -> b\) — a block may use other blocks, never itself"),
    ("block-shadows-kind", "input: [3, 8, 8]\nblocks:\n  relu:\n    layers: [tanh]\nlayers: [relu]\n",
     r"3:3: block name 'relu' shadows the built-in layer kind — rename the block"),
    ("block-reserved-arg", "input: [3, 8, 8]\nblocks:\n  b:\n    args: {from: 1}\n    layers: [relu]\nlayers: [b]\n",
     r"4:12: block argument 'from' of block 'b' is reserved"),
    ("block-without-layers", "input: [3, 8, 8]\nblocks:\n  b: {args: {n: 1}}\nlayers: [b]\n",
     r"3:6: expected block 'b' to be a mapping with 'layers' \(and optional 'args'\), got a mapping"),
    ("block-unknown-key", "input: [3, 8, 8]\nblocks:\n  b:\n    arg: {n: 1}\n    layers: [relu]\nlayers: [b]\n",
     (r"4:5: unknown key 'arg' in block 'b' \(expected description, args, layers, output\) — "
     r"did you mean 'args'\?")),
    ("skipped-two-inputs", "input: [3, 8, 8]\nlayers:\n  - relu: {name: a}\n  - relu: {from: [a, input], when: false}\n",
     r"4:36: layer 'relu1' \(relu\): expected exactly one input for a layer skipped with 'when: false', got 2 — a "
     r"skipped layer passes its input through, so it needs exactly one \(a skipped merge such as add passes its first "
     r"input\)"),
    ("repeat-index-not-a-name", "input: [3, 8, 8]\nlayers:\n  - relu: {repeat: {count: 2, index: 3}}\n",
     r"3:38: layer 'relu1' \(relu\): expected the 'index' of 'repeat' to be a name like 'i', got the number 3"),
    ("repeat-unknown-key", "input: [3, 8, 8]\nlayers:\n  - relu: {repeat: {count: 2, idx: i}}\n",
     r"3:31: layer 'relu1' \(relu\): unknown key 'idx' in 'repeat' \(expected count, index\) — did you mean 'index'\?"),
    ("repeat-index-outside", "input: [3, 8, 8]\nlayers:\n  - conv: {out: '${i}', kernel: 1}\n",
     r"3:17: layer 'conv1' \(conv\): unknown block argument 'i' in '\$\{i\}'"),
    ("block-default-uses-later", ("input: [3, 8, 8]\nblocks:\n  b:\n    args: {mid: '${out // 4}', out: 8}\n"
                                  "    layers: [{conv: {out: $mid, kernel: 1}}]\nlayers: [b]\n"),
     (r"4:17: layer 'b1' \(b\): in the default of argument 'mid': unknown block argument 'out' in "
      r"'\$\{out // 4\}' — a default can use the arguments declared before it")),
    # ---- suggestions and answers
    ("kind-case", "input: [3, 8, 8]\nlayers:\n  - ReLU\n", r"3:5: unknown layer kind 'ReLU' — did you mean 'relu'\?"),
    ("attribute-case", "input: [3, 8, 8]\nlayers:\n  - conv: {out: 8, Kernel: 3}\n",
     r"3:20: layer 'conv1' \(conv\): unknown attribute 'Kernel' .* — did you mean 'kernel'\?"),
    ("training-only-attribute", "input: [3, 8, 8]\nlayers:\n  - batchnorm: {momentum: 0.1}\n",
     (r"3:17: layer 'batchnorm1' \(batchnorm\): unknown attribute 'momentum' \(expected eps, affine\) — "
      r"'momentum' only matters in training \(it sets how fast the running statistics move during training\); "
      r"cnngraph runs inference, so remove it")),
    ("flow-style-template", ("input: [3, 8, 8]\nblocks:\n  b:\n    args: {c: 4}\n"
                             "    layers: [{conv: {out: ${c}, kernel: 3}}]\nlayers: [b]\n"),
     (r"5:28: YAML syntax error: expected ',' or '\}', but got '\{' .* — inside '\{...\}' or '\[...\]' "
      r"\(flow style\) quote a '\$\{...\}' value: out: \"\$\{2 \* c\}\"")),
    # ---- hostile or broken input (issue 8): refused early, with a position, on one line
    ("alias-bomb", ("input: [3, 8, 8]\nblocks:\n  b:\n    layers: [relu]\n    args:\n      a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
                    + "".join(f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
                    + "layers: [relu]\n"),
     (r"11:11: expected at most 1,000,000 YAML values once aliases are expanded, got 1,111,111 in the value "
      r"that starts here — aliases \(\*name\) that repeat other aliases multiply")),
    ("alias-cycle", "input: &x [3, *x]\nlayers: [relu]\n",
     r"1:8: a YAML alias refers to a value that contains it \(an endless value\)"),
    ("deep-nesting", "input: " + "[" * 5000 + "]" * 5000 + "\nlayers: [relu]\n",
     r"1:107: expected lists and mappings nested at most 100 deep, got deeper"),
    ("huge-integer", "input: [3, 8, 8]\nlayers:\n  - conv: {out: " + "9" * 4301 + ", kernel: 3}\n",
     r"3:17: expected a number of at most 100 digits, got one of 4,301 characters \(too large to be sane\)"),
    ("nan-attribute", "input: [3, 8, 8]\nlayers:\n  - leaky_relu: {alpha: .nan}\n",
     r"3:25: expected a number, got \.nan — NaN has no meaning in a network's description"),
    ("nan-in-a-list", "input: [3, 8, 8]\nlayers:\n  - pad: {padding: [1, .NaN]}\n",
     r"3:24: expected a number, got \.NaN"),
    ("skipped-layers-count", ("input: [3, 8, 8]\nblocks:\n  b:\n    layers: [{relu: {when: false, repeat: 10000}}]\n"
                              "layers:\n  - b: {repeat: 10000}\n"),
     r"4:15: expected at most 100,000 layers once blocks and repeats are expanded \(skipped ones included\)"),
    ("exploding-arithmetic", ("input: [3, 8, 8]\nblocks:\n"
                              + "".join(f"  b{i}:\n    args: {{v: 2}}\n    layers: [{{b{i + 1}: {{v: '${{v*v*v*v}}'}}}}]\n"
                                        for i in range(40))
                              + "  b40:\n    layers: [relu]\nlayers: [b0]\n"),
     r"14:23: layer 'b01\.b11\.b21\.b31\.b41' \(b4\): expected numbers of at most 2\^64 in '\$\{v\*v\*v\*v\}'"),
    ("control-characters", 'input: [3, 8, 8]\nlayers:\n  - relu: {from: "a\\nb\\u001b[31m"}\n',
     r"3:18: layer 'relu1' \(relu\): unknown layer 'a\\nb\\x1b\[31m' in 'from'$"),
    ("newline-in-name", 'input: [3, 8, 8]\nlayers:\n  - relu: {name: "x\\ny"}\n  - relu: {name: "x\\ny"}\n',
     r"4:5: layer 'x\\ny' \(relu\): duplicate layer name"),
    ("huge-list-echoed", ("input: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 3, padding: [["
                          + ", ".join(["1"] * 100000) + "]]}\n"),
     r"3:40: .*got \[1, 1, 1, .*… \(299,\d+ characters left out\) …1, 1, [1, ]*\]$"),
    ("top-level-name-type", "name: [1, 2]\ninput: [3, 8, 8]\nlayers: [relu]\n",
     r"1:7: expected 'name' to be a name, got a list"),
    ("top-level-output-type", "input: [3, 8, 8]\noutput: {a: 1}\nlayers: [relu]\n",
     r"2:9: expected 'output' to be a layer name, got a mapping"),
    ("top-level-block-name", "input: [3, 8, 8]\nblocks: {1: {layers: [relu]}}\nlayers: [relu]\n",
     r"2:10: expected block names like 'basic' or 'conv_bn', got 1"),
]


def _write(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case, text, message", CASES, ids=[c[0] for c in CASES])
def test_library_message(tmp_path, case, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(SpecError, match=re.escape(str(path)) + ":" + message) as info:
        cnngraph.load(path)
    assert "\n" not in str(info.value)  # one message, one line


@pytest.mark.parametrize("case, text, message", CASES, ids=[c[0] for c in CASES])
def test_cli_message(tmp_path, monkeypatch, capsys, case, text, message):
    _write(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    assert main(["compile", "bad.yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and re.match("error: bad.yaml:" + message, lines[0]), err


# one case per family of mistakes, also run as a real process (start-up costs ~0.5 s each)
IN_A_PROCESS = ["yaml-unclosed-brace", "unsafe-tag-apply", "empty-file", "input-string", "unknown-kind",
                "unknown-attribute", "wrong-type-string", "too-large-tensor", "kernel-too-large",
                "groups-do-not-divide", "concat-spatial", "linear-on-a-map", "cyclic-reference", "duplicate-name",
                "block-unknown-variable", "block-recursion"]


def test_cli_in_a_real_process(tmp_path):
    """`python -m cnngraph compile bad.yaml` as a user runs it: exit 1, one line, no traceback."""
    cases = [c for c in CASES if c[0] in IN_A_PROCESS]
    assert len(cases) == len(IN_A_PROCESS)

    def run(case):
        d = tmp_path / case[0]
        d.mkdir()
        (d / "bad.yaml").write_text(case[1])
        return subprocess.run([sys.executable, "-m", "cnngraph", "compile", "bad.yaml"], capture_output=True,
                              text=True, cwd=d, timeout=300, check=False)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = list(pool.map(run, cases))
    failures = []
    for (case, _, message), p in zip(cases, results):
        lines = p.stderr.splitlines()
        ok = (p.returncode == 1 and p.stdout == "" and "Traceback" not in p.stderr and len(lines) == 1
              and re.match("error: bad.yaml:" + message, lines[0]))
        if not ok:
            failures.append(f"{case}: exit {p.returncode}, stderr {p.stderr!r}")
    assert not failures, "\n".join(failures)


def test_missing_file(tmp_path, capsys):
    with pytest.raises(SpecError, match=r"^no such file: .*nowhere\.yaml$"):
        cnngraph.load(tmp_path / "nowhere.yaml")
    assert main(["compile", str(tmp_path / "nowhere.yaml")]) == 1
    assert capsys.readouterr().err == f"error: no such file: {tmp_path / 'nowhere.yaml'}\n"
    p = subprocess.run([sys.executable, "-m", "cnngraph", "compile", "nowhere.yaml"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=120, check=False)
    assert (p.returncode, p.stderr) == (1, ("error: no such file: nowhere.yaml — 'cnngraph specs' lists the "
                                            "bundled specs\n"))


def test_bundled_spec_by_name_and_close_names(tmp_path, monkeypatch):
    """`resnet50` or `resnet50.yaml` without a folder is the bundled spec when no such file is here."""
    monkeypatch.chdir(tmp_path)
    assert cnngraph.load("resnet18").name == "resnet18"
    assert cnngraph.load("lenet5.yaml").output_shape == (10,)
    with pytest.raises(SpecError, match=r"^no such file: resnet5 — did you mean 'resnet50' \(a bundled spec\)\?$"):
        cnngraph.load("resnet5")
    (tmp_path / "lenet5.yaml").write_text("input: [2]\nlayers: [relu]\n")  # a local file wins
    assert cnngraph.load("lenet5.yaml").input_shape == (2,)


def test_fifo_and_oversized_spec_files_are_refused_before_reading(tmp_path):
    fifo = tmp_path / "net.yaml"
    os.mkfifo(fifo)  # open() would block forever
    with pytest.raises(SpecError, match=r"cannot read .*net\.yaml: not a regular file"):
        cnngraph.load(fifo)
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(65 << 20)  # sparse: no disk used
    with pytest.raises(SpecError, match=r"big\.yaml: 68,157,440 bytes, expected a spec of at most 67,108,864 bytes"):
        cnngraph.load(big)


def test_unreadable_file(tmp_path, capsys):
    (tmp_path / "dir.yaml").mkdir()
    assert main(["compile", str(tmp_path / "dir.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read {tmp_path / 'dir.yaml'}") and "Traceback" not in err
    (tmp_path / "latin1.yaml").write_bytes(b"input: [3, 8, 8]\nlayers: [relu]\n# caf\xe9\n")
    with pytest.raises(SpecError, match=r"cannot read .*latin1\.yaml: 'utf-8' codec can't decode"):
        cnngraph.load(tmp_path / "latin1.yaml")


def test_unsafe_yaml_never_runs(tmp_path):
    marker = tmp_path / "owned"
    path = _write(tmp_path, f"input: !!python/object/apply:os.system ['touch {marker}']\nlayers: [relu]\n")
    with pytest.raises(SpecError, match="got the tag '!!python/object/apply:os.system'"):
        cnngraph.load(path)
    assert not marker.exists()


def test_infinity_is_allowed_where_it_means_something():
    """The ONNX importer writes a -inf pad before a max-pool whose padding PyTorch would not allow."""
    g = cnngraph.load("input: [1, 4, 4]\nlayers: [{pad: {padding: 1, value: -.inf}}, {maxpool: {kernel: 2}}]")
    assert g.output_shape == (1, 3, 3)


def test_merge_keys_are_plain_yaml():
    """`<<: *anchor` is safe YAML and works; explicit keys win over merged ones."""
    g = cnngraph.load("input: [3, 8, 8]\nlayers:\n  - conv: &c {out: 4, kernel: 3, padding: 1}\n"
                      "  - conv: {<<: *c, out: 8}\n")
    assert g.output_shape == (8, 8, 8)
    with pytest.raises(SpecError, match=r"4:16: expected a mapping \(or a list of mappings\) after '<<', "
                                        r"got the number 3"):
        cnngraph.load("input: [3, 8, 8]\nlayers:\n  - conv: {out: 4, kernel: 3}\n  - conv: {<<: 3}\n")
