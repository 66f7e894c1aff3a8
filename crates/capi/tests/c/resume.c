/* Resuming through the C API: a run saved after a few steps, freed, and resumed from its
 * directory goes on with the losses of the same run trained without a break; its directory
 * holds run.json and one metrics line per step, and settings a resumed run may not change are
 * refused by name. */
#include <stdint.h>

#include "check.h"

#define STEPS 6
#define SPLIT 3

/* The loss of each of the trainer's steps from `from` up to STEPS, into `loss[from..]`. */
static void train_losses(anetrain_trainer *t, int from, float *loss) {
    for (int i = from; i < STEPS; i++) {
        anetrain_step_metrics m;
        OK(anetrain_trainer_step(t, &m));
        EXPECT(m.step == (uint64_t)i + 1);
        loss[i] = m.loss;
    }
}

/* Lines in a text file. */
static int count_lines(const char *path) {
    FILE *f = fopen(path, "r");
    EXPECT(f != NULL);
    int lines = 0;
    for (int c = fgetc(f); c != EOF; c = fgetc(f)) lines += c == '\n';
    fclose(f);
    return lines;
}

int main(int argc, char **argv) {
    EXPECT(argc == 2); /* a scratch directory */
    char run_dir[1024], path[1200];
    snprintf(run_dir, sizeof run_dir, "%s/run", argv[1]);
    /* Shuffled data and a warmup: the data position, the optimizer state and the schedule
     * all have to be restored for the losses to agree. */
    const char *options =
        "{\"steps\": 6, \"batch\": 2, \"seq\": 16, \"lr\": 0.003, \"warmup\": 2, "
        "\"seed\": 5, \"device\": \"cpu\", \"eval_every\": 0}";
    const char *data = "synthetic:20000";

    float whole[STEPS], split[STEPS];
    anetrain_trainer *t = NULL;
    OK(anetrain_trainer_new("tiny", data, options, &t));
    train_losses(t, 0, whole);
    anetrain_trainer_free(t);

    /* The same run, saved after SPLIT steps (its first directory: the run's own). */
    OK(anetrain_trainer_new("tiny", data, options, &t));
    for (int i = 0; i < SPLIT; i++) OK(anetrain_trainer_step(t, NULL));
    OK(anetrain_trainer_save(t, run_dir));
    /* The directory is the live trainer's: another trainer of this process cannot resume it. */
    anetrain_trainer *other = NULL;
    FAILS(anetrain_trainer_resume(run_dir, NULL, NULL, &other), ANETRAIN_ERR_MODEL,
          "in use by another trainer");
    anetrain_trainer_free(t);

    FAILS(anetrain_trainer_resume(run_dir, NULL, "{\"batch\": 3}", &other), ANETRAIN_ERR_MODEL,
          "--batch is 3 but the checkpoint used 2");
    FAILS(anetrain_trainer_resume(argv[1], NULL, NULL, &other), ANETRAIN_ERR_MODEL,
          "no checkpoint");
    OK(anetrain_trainer_resume(run_dir, NULL, NULL, &t));
    train_losses(t, SPLIT, split);
    anetrain_step_metrics past;
    FAILS(anetrain_trainer_step(t, &past), ANETRAIN_ERR_MODEL, "total of 6 steps");
    anetrain_trainer_free(t);
    for (int i = SPLIT; i < STEPS; i++) {
        printf("step %d: loss %.6f uninterrupted, %.6f resumed\n", i + 1, whole[i], split[i]);
        EXPECT(split[i] == whole[i]);
    }

    /* The run directory: one metrics line per step, run.json, and the last step's checkpoint
     * (saved because it was due). */
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    EXPECT(count_lines(path) == STEPS);
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    EXPECT(count_lines(path) > 0);
    snprintf(path, sizeof path, "%s/ckpt-00000006/meta.json", run_dir);
    EXPECT(count_lines(path) > 0);

    printf("resume: all checks passed\n");
    return 0;
}
