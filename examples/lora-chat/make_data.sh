#!/bin/sh
# Writes a small instruction set in mlx-lm's {"messages"} form: DIR/train.jsonl and
# DIR/valid.jsonl. Every reply follows one new format, "Sure! The <thing> is <colour>.", which
# a model pretrained on stories has never seen. Needs only a POSIX shell; nothing is downloaded.
#
# usage: make_data.sh DIR [TRAIN_EXAMPLES]
set -eu
dir=${1:?usage: make_data.sh DIR [TRAIN_EXAMPLES]}
n=${2:-200}
mkdir -p "$dir"
things="sky grass sun snow cat dog tree sea fox moon ball house"
colours="blue green yellow white black brown red grey orange pink"
questions="%s?|%s colour?|colour of %s?"

example() { # index -> one JSON line
    i=$1
    set -- $things; shift $(( i % 12 )); thing=$1
    set -- $colours; shift $(( (i / 12) % 10 )); colour=$1
    q=$(printf "$(echo "$questions" | cut -d'|' -f$(( i % 3 + 1 )))" "$thing")
    printf '{"messages": [{"role": "user", "content": "%s"}, {"role": "assistant", "content": "Sure! The %s is %s."}]}\n' \
        "$q" "$thing" "$colour"
}

: > "$dir/train.jsonl"
i=0
while [ "$i" -lt "$n" ]; do
    example "$i" >> "$dir/train.jsonl"
    i=$(( i + 1 ))
done
# Validation examples come from further along the same sequence.
: > "$dir/valid.jsonl"
i=0
while [ "$i" -lt 16 ]; do
    example $(( i * 7 + 1000 )) >> "$dir/valid.jsonl"
    i=$(( i + 1 ))
done
echo "wrote $n training and 16 validation examples to $dir"
