/* The model journey through the C API: train a tiny preset with a metrics callback that sees
 * the loss fall and stops early, save, reload the checkpoint and compare its validation loss
 * with the trainer's, generate with a callback that stops after k tokens (greedy tokens
 * checked against the reference model's logits, computed without a KV cache), and export. */
#include <math.h>
#include <stdint.h>

#include "check.h"

#define STOP_AFTER 6
#define MAX_STEPS 64

struct losses {
    float loss[MAX_STEPS];
    uint64_t step[MAX_STEPS];
    int seen;
};

static int on_step(const anetrain_step_metrics *m, void *user) {
    struct losses *l = user;
    l->loss[l->seen] = m->loss;
    l->step[l->seen] = m->step;
    l->seen++;
    printf("step %llu: loss %.4f lr %.2e\n", (unsigned long long)m->step, m->loss, m->lr);
    return l->seen == STOP_AFTER; /* non-zero stops */
}

#define K_TOKENS 5

struct tokens {
    uint32_t id[64];
    int count;
    int stop_after;
    char text[1024];
};

static int on_token(uint32_t token, const char *piece, void *user) {
    struct tokens *t = user;
    EXPECT(token != ANETRAIN_NO_TOKEN); /* greedy stops mid-stream: nothing is held back */
    t->id[t->count++] = token;
    if (piece != NULL) {
        strncat(t->text, piece, sizeof t->text - strlen(t->text) - 1);
    }
    return t->count == t->stop_after;
}

static size_t argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++) {
        if (v[i] > v[best]) best = i;
    }
    return best;
}

int main(int argc, char **argv) {
    EXPECT(argc == 2); /* a scratch directory */
    char run_dir[1024], hf_dir[1024];
    snprintf(run_dir, sizeof run_dir, "%s/run", argv[1]);
    snprintf(hf_dir, sizeof hf_dir, "%s/hf", argv[1]);
    const char *options =
        "{\"steps\": 40, \"batch\": 4, \"seq\": 32, \"lr\": 0.003, \"warmup\": 0, "
        "\"seed\": 1, \"device\": \"cpu\", \"eval_batches\": 4}";
    const char *data = "synthetic:20000";

    /* Train: the callback sees every step and stops the loop after STOP_AFTER of them. */
    anetrain_trainer *t = NULL;
    OK(anetrain_trainer_new("tiny", data, options, &t));
    struct losses l = {0};
    uint64_t taken = 0;
    OK(anetrain_trainer_train(t, 20, on_step, &l, &taken));
    EXPECT(taken == STOP_AFTER && l.seen == STOP_AFTER);
    for (int i = 0; i < l.seen; i++) EXPECT(l.step[i] == (uint64_t)i + 1);
    printf("loss %.4f at step 1, %.4f at step %d\n", l.loss[0], l.loss[l.seen - 1], l.seen);
    EXPECT(l.loss[l.seen - 1] < l.loss[0] - 0.2f);
    anetrain_step_metrics one;
    OK(anetrain_trainer_step(t, &one));
    EXPECT(one.step == STOP_AFTER + 1 && isfinite(one.loss) && isnan(one.val_loss));
    float val = 0;
    OK(anetrain_trainer_evaluate(t, &val));
    printf("validation loss %.6f\n", val);
    EXPECT(isfinite(val) && val > 0);
    OK(anetrain_trainer_save(t, run_dir));

    /* The checkpoint, reloaded and put in a new trainer on the same data, evaluates alike. */
    anetrain_model *m = NULL;
    OK(anetrain_model_load(run_dir, &m));
    anetrain_trainer *again = NULL;
    OK(anetrain_trainer_new_from_model(m, data, options, &again));
    float val_again = 0;
    OK(anetrain_trainer_evaluate(again, &val_again));
    printf("reloaded validation loss %.6f\n", val_again);
    EXPECT(fabsf(val_again - val) <= 1e-6f * val);
    FAILS(anetrain_trainer_save(again, run_dir), ANETRAIN_ERR_MODEL, "already holds a run");

    /* Generate from text: greedy, stopped by the callback after K_TOKENS tokens. */
    const char *config = NULL;
    OK(anetrain_model_config_json(m, &config));
    size_t vocab = (size_t)json_number(config, "vocab_size");
    EXPECT(vocab == 258); /* the byte tokenizer's: 256 bytes, BOS, EOS */
    anetrain_generate_options greedy;
    OK(anetrain_generate_options_default(&greedy));
    EXPECT(greedy.temperature == 0 && greedy.top_p == 1);
    struct tokens from_text = {.stop_after = K_TOKENS};
    anetrain_generation_report report;
    OK(anetrain_model_generate_text(m, "cpu", "Once", 20, &greedy, on_token, &from_text, &report));
    printf("generated \"%s\"\n", from_text.text);
    EXPECT(from_text.count == K_TOKENS && report.generated_tokens == K_TOKENS);
    EXPECT(report.prompt_tokens == 5); /* BOS and four bytes */

    /* Each greedy token is the argmax of the reference model's logits after what precedes it. */
    uint32_t seq[64] = {256, 'O', 'n', 'c', 'e'};
    size_t len = 5;
    float *logits = malloc(vocab * sizeof *logits);
    for (int i = 0; i < K_TOKENS; i++) {
        OK(anetrain_model_logits(m, seq, len, logits, vocab));
        EXPECT(argmax(logits, vocab) == from_text.id[i]);
        seq[len++] = from_text.id[i];
    }
    char expected[64] = {0};
    for (int i = 0; i < K_TOKENS; i++) expected[i] = (char)from_text.id[i];
    EXPECT(strcmp(expected, from_text.text) == 0); /* byte tokens: the text is the bytes */

    /* The same prompt as ids gives the same tokens; NULL options is greedy. */
    struct tokens from_ids = {.stop_after = K_TOKENS};
    OK(anetrain_model_generate(m, "cpu", seq, 5, 20, NULL, on_token, &from_ids, NULL));
    EXPECT(from_ids.count == K_TOKENS);
    EXPECT(memcmp(from_ids.id, from_text.id, sizeof(uint32_t) * K_TOKENS) == 0);

    /* Export to Hugging Face and read it back: the same loss on the same rows. */
    OK(anetrain_model_export(m, "hf", hf_dir));
    anetrain_model *hf = NULL;
    OK(anetrain_model_load(hf_dir, &hf));
    float a = 0, b = 0;
    OK(anetrain_model_eval(m, "reference", seq, 1, len, &a));
    OK(anetrain_model_eval(hf, "reference", seq, 1, len, &b));
    printf("loss of the generated row: checkpoint %.6f, exported %.6f\n", a, b);
    EXPECT(a == b);

    /* Error paths. */
    FAILS(anetrain_model_export(m, "hf", hf_dir), ANETRAIN_ERR_INVALID_ARGUMENT, "already holds a model.safetensors");
    FAILS(anetrain_model_export(m, "onnx", hf_dir), ANETRAIN_ERR_INVALID_ARGUMENT, "choose hf, llama2c, peft or mlx");
    FAILS(anetrain_model_generate_text(m, "cpu", "x", 4, NULL, NULL, NULL, NULL), ANETRAIN_ERR_INVALID_ARGUMENT, "`callback` is NULL");
    anetrain_generate_options hot = greedy;
    hot.temperature = -1;
    FAILS(anetrain_model_generate_text(m, "cpu", "x", 4, &hot, on_token, &from_ids, NULL), ANETRAIN_ERR_INVALID_ARGUMENT, "temperature -1");
    uint32_t bad = 100000;
    FAILS(anetrain_model_generate(m, "cpu", &bad, 1, 4, NULL, on_token, &from_ids, NULL), ANETRAIN_ERR_INVALID_ARGUMENT, "prompt token 100000");
    FAILS(anetrain_model_logits(m, seq, len, logits, vocab - 1), ANETRAIN_ERR_SIZE, "room for the vocabulary's 258");
    anetrain_model *preset = NULL;
    OK(anetrain_model_load("tiny", &preset));
    FAILS(anetrain_model_generate_text(preset, "cpu", "x", 4, NULL, on_token, &from_ids, NULL), ANETRAIN_ERR_INVALID_ARGUMENT, "carries no tokenizer");
    anetrain_trainer *bad_trainer = NULL;
    FAILS(anetrain_trainer_new("tiny", data, "{\"stpes\": 3}", &bad_trainer), ANETRAIN_ERR_MODEL, "stpes");
    FAILS(anetrain_trainer_new("tiny", data, "{\"steps\": 2, \"device\": \"gpu\"}", &bad_trainer), ANETRAIN_ERR_INVALID_ARGUMENT, "unknown device `gpu`");
    FAILS(anetrain_trainer_new("tiny", "no-such-data.bin", NULL, &bad_trainer), ANETRAIN_ERR_MODEL, "no-such-data.bin");
    EXPECT(bad_trainer == NULL);
    anetrain_trainer *short_run = NULL;
    OK(anetrain_trainer_new("tiny", data, "{\"steps\": 1, \"batch\": 2, \"seq\": 16, \"device\": \"cpu\"}", &short_run));
    OK(anetrain_trainer_train(short_run, 5, NULL, NULL, &taken));
    EXPECT(taken == 1);
    FAILS(anetrain_trainer_step(short_run, NULL), ANETRAIN_ERR_MODEL, "total of 1 steps");

    anetrain_trainer_free(short_run);
    anetrain_model_free(preset);
    anetrain_model_free(hf);
    anetrain_trainer_free(again);
    anetrain_model_free(m);
    anetrain_trainer_free(t);
    anetrain_trainer_free(NULL);
    free(logits);
    printf("train_generate: all checks passed\n");
    return 0;
}
