/* A Hugging Face fixture loaded through the C API: its loss on the fixture's own token rows
 * must be the loss transformers computed (meta.json), on the MIL kernels and the reference. */
#include <math.h>
#include <stdint.h>

#include "check.h"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    EXPECT(f != NULL);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    EXPECT(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    EXPECT(argc == 3); /* the fixture directory, a scratch directory */
    const char *dir = argv[1];
    char path[1024];
    size_t len = 0;
    snprintf(path, sizeof path, "%s/meta.json", dir);
    char *meta = read_file(path, &len);
    double want = json_number(meta, "loss");
    size_t rows = (size_t)json_number(meta, "batch"), cols = (size_t)json_number(meta, "seq") + 1;
    snprintf(path, sizeof path, "%s/tokens.bin", dir);
    char *raw = read_file(path, &len);
    EXPECT(len == rows * cols * 4);
    uint32_t *tokens = malloc(len);
    for (size_t i = 0; i < rows * cols; i++) {
        const unsigned char *b = (const unsigned char *)raw + 4 * i;
        tokens[i] = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    }

    anetrain_model *m = NULL;
    OK(anetrain_model_load(dir, &m));
    const char *config = NULL;
    OK(anetrain_model_config_json(m, &config));
    printf("config: %s\n", config);
    EXPECT(strstr(config, "\"hidden_size\"") != NULL);

    const char *devices[] = {"cpu", "reference"};
    for (int d = 0; d < 2; d++) {
        float loss = 0;
        OK(anetrain_model_eval(m, devices[d], tokens, rows, cols, &loss));
        printf("%s: loss %.6f, transformers %.6f\n", devices[d], loss, want);
        EXPECT(fabs(loss - want) < 1e-4 * want);
    }

    /* Error paths: a code and a message naming the problem. */
    float loss = -1;
    FAILS(anetrain_model_eval(m, "gpu", tokens, rows, cols, &loss), ANETRAIN_ERR_INVALID_ARGUMENT, "unknown device `gpu`");
    FAILS(anetrain_model_eval(m, "cpu", tokens, rows, 1, &loss), ANETRAIN_ERR_INVALID_ARGUMENT, "at least 2 tokens");
    FAILS(anetrain_model_eval(m, "cpu", NULL, rows, cols, &loss), ANETRAIN_ERR_INVALID_ARGUMENT, "`tokens` is NULL");
    tokens[3] = 100000;
    FAILS(anetrain_model_eval(m, "reference", tokens, rows, cols, &loss), ANETRAIN_ERR_INVALID_ARGUMENT, "100000");
    EXPECT(loss == -1);
    anetrain_model *missing = NULL;
    snprintf(path, sizeof path, "%s/no-such-model", argv[2]);
    FAILS(anetrain_model_load(path, &missing), ANETRAIN_ERR_INVALID_ARGUMENT, "does not exist");
    EXPECT(missing == NULL);
    snprintf(path, sizeof path, "%s/not-a-model.bin", argv[2]);
    FILE *f = fopen(path, "wb");
    EXPECT(f != NULL && fwrite("garbage", 1, 7, f) == 7);
    fclose(f);
    FAILS(anetrain_model_load(path, &missing), ANETRAIN_ERR_MODEL, "not-a-model.bin");

    anetrain_model_free(m);
    anetrain_model_free(NULL);
    free(tokens);
    free(raw);
    free(meta);
    printf("model: all checks passed\n");
    return 0;
}
