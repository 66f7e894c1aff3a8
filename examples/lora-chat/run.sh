#!/bin/sh
# The LoRA chat journey, end to end on any machine (the ANE on a Mac, the CPU elsewhere):
# pretrain a tiny model on the built-in stories, LoRA-fine-tune it on an instruction set in
# {"messages"} form with --mask-prompt, and compare the base's and the adapted model's answer.
# Takes about half a minute on two cores. Set ANETRAIN to the binary (default: anetrain).
#
# usage: run.sh [WORK_DIR]
set -eu
anetrain=${ANETRAIN:-anetrain}
work=${1:-lora-chat-work}
here=$(dirname "$0")
rm -rf "$work"
mkdir -p "$work"

# 1. A base model: the tiny preset trained on the synthetic stories (byte tokenizer).
"$anetrain" train --model tiny --steps 300 --out "$work/base" --sample-tokens 0 --log-every 100

# 2. The instruction set: train.jsonl and valid.jsonl, every reply in one new format.
sh "$here/make_data.sh" "$work/data" 200

# 3. LoRA on the frozen base. The data has no chat template of its own, so the byte tokenizer's
#    plain format renders it ("user: ...\nassistant: ...\n</s>"); --mask-prompt makes only the
#    replies count. Validation loss (val) falls as the adapter learns the format.
"$anetrain" train --init-from "$work/base" --lora-rank 8 --lora-targets all \
    --data "$work/data" --mask-prompt --steps 150 --batch 8 --seq 64 --lr 3e-3 --warmup 5 \
    --eval-every 25 --sample-tokens 0 --log-every 25 --out "$work/lora"

# 4. The same question to both models, greedy: the base tells a story, the adapted model
#    answers in the instruction format ("Sure! The moon is ...").
prompt=$(printf 'user: moon colour?\nassistant: ')
for model in base lora; do
    echo "--- $model"
    "$anetrain" generate --model "$work/$model" --prompt "$prompt" --temperature 0 \
        --max-tokens 30 2>/dev/null
    echo
done
