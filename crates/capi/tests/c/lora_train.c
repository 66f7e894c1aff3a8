/* LoRA through the C API: a tiny base trained briefly and saved, then an adapter trained on it
 * from the LoRA keys of the trainer's JSON options: the loss falls, the checkpoint holds only
 * the adapter (PEFT files, no model weights, a small fraction of the base's size), `adapter`
 * continues it with the same validation loss, and a bad LoRA setting is refused with a message
 * naming it. */
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

#include "check.h"

#define LORA_STEPS 30

struct losses {
    float first, last;
    int seen;
};

static int on_step(const anetrain_step_metrics *m, void *user) {
    struct losses *l = user;
    if (l->seen++ == 0) l->first = m->loss;
    l->last = m->loss;
    return 0;
}

/* The size of `dir/name` in bytes, or -1 when it does not exist. */
static long long file_size(const char *dir, const char *name) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

int main(int argc, char **argv) {
    EXPECT(argc == 2); /* a scratch directory */
    char base_dir[1024], base_ckpt[1100], lora_dir[1024], lora_ckpt[1100];
    snprintf(base_dir, sizeof base_dir, "%s/base", argv[1]);
    snprintf(base_ckpt, sizeof base_ckpt, "%s/ckpt-00000003", base_dir);
    snprintf(lora_dir, sizeof lora_dir, "%s/lora", argv[1]);
    snprintf(lora_ckpt, sizeof lora_ckpt, "%s/ckpt-%08d", lora_dir, LORA_STEPS);
    const char *data = "synthetic:20000";

    /* The base: the tiny preset after a few full steps (far from trained), saved as a run. */
    anetrain_trainer *t = NULL;
    OK(anetrain_trainer_new("tiny", data,
                            "{\"steps\": 3, \"batch\": 4, \"seq\": 32, \"lr\": 0.003, "
                            "\"warmup\": 0, \"seed\": 1, \"device\": \"cpu\"}",
                            &t));
    OK(anetrain_trainer_train(t, 3, NULL, NULL, NULL));
    OK(anetrain_trainer_save(t, base_dir));
    anetrain_trainer_free(t);

    /* The adapter, from the JSON LoRA keys (targets as a list). */
    const char *lora =
        "{\"steps\": 30, \"batch\": 4, \"seq\": 32, \"lr\": 0.03, \"warmup\": 0, \"seed\": 2, "
        "\"device\": \"cpu\", \"lora_rank\": 4, \"lora_alpha\": 8, "
        "\"lora_targets\": [\"q_proj\", \"v_proj\", \"down_proj\"], \"lora_layers\": 2}";
    t = NULL;
    OK(anetrain_trainer_new(base_ckpt, data, lora, &t));
    struct losses l = {0};
    uint64_t taken = 0;
    OK(anetrain_trainer_train(t, LORA_STEPS, on_step, &l, &taken));
    printf("LoRA loss %.4f at step 1, %.4f at step %d\n", l.first, l.last, l.seen);
    EXPECT(taken == LORA_STEPS && l.seen == LORA_STEPS);
    EXPECT(l.last < l.first - 0.05f);
    float val = 0;
    OK(anetrain_trainer_evaluate(t, &val));
    OK(anetrain_trainer_save(t, lora_dir));
    anetrain_trainer_free(t);

    /* `adapter` continues the saved adapter on the same base: its validation loss to start. */
    char again[1400];
    snprintf(again, sizeof again,
             "{\"steps\": 5, \"batch\": 4, \"seq\": 32, \"seed\": 2, \"device\": \"cpu\", "
             "\"adapter\": \"%s\"}",
             lora_ckpt);
    t = NULL;
    OK(anetrain_trainer_new(base_ckpt, data, again, &t));
    float val_again = 0;
    OK(anetrain_trainer_evaluate(t, &val_again));
    printf("validation loss %.6f trained, %.6f continued\n", val, val_again);
    EXPECT(fabsf(val_again - val) <= 1e-5f * val);
    anetrain_trainer_free(t);

    /* The checkpoint is the adapter (and its optimizer state), not a copy of the base. */
    long long base_weights = file_size(base_ckpt, "model.safetensors");
    long long adapter = file_size(lora_ckpt, "adapter_model.safetensors");
    printf("base weights %lld bytes, adapter %lld bytes\n", base_weights, adapter);
    EXPECT(base_weights > 0 && adapter > 0);
    EXPECT(file_size(lora_ckpt, "adapter_config.json") > 0);
    EXPECT(file_size(lora_ckpt, "model.safetensors") == -1);
    EXPECT(adapter * 10 < base_weights);

    /* Bad LoRA settings name the problem before any training. */
    anetrain_trainer *bad = NULL;
    FAILS(anetrain_trainer_new(base_ckpt, data, "{\"lora_rank\": 0, \"device\": \"cpu\"}", &bad),
          ANETRAIN_ERR_MODEL, "rank is 0");
    FAILS(anetrain_trainer_new(base_ckpt, data,
                               "{\"lora_targets\": \"q_proj,qq_proj\", \"device\": \"cpu\"}", &bad),
          ANETRAIN_ERR_MODEL, "qq_proj");
    FAILS(anetrain_trainer_new("tiny", data, "{\"lora_rank\": 4, \"device\": \"cpu\"}", &bad),
          ANETRAIN_ERR_MODEL, "base's path as the model");
    FAILS(anetrain_trainer_new(base_ckpt, data, "{\"lora_rank\": \"eight\"}", &bad),
          ANETRAIN_ERR_MODEL, "\"eight\"");
    EXPECT(bad == NULL);
    printf("lora_train: all checks passed\n");
    return 0;
}
