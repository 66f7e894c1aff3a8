/* A MIL kernel on the CPU device, checked against the same math written here in C:
 * out = silu(W x) + bias, with W a BLOBFILE weight given in memory and as a directory. */
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

#include "check.h"

enum { CIN = 4, COUT = 6, S = 8 };

static const char *MIL =
    "program(1.3)\n"
    "{\n"
    "    func main<ios18>(tensor<fp16, [1, 4, 1, 8]> x, tensor<fp16, [1, 6, 1, 8]> bias) {\n"
    "        string pt = const()[name = string(\"pt\"), val = string(\"valid\")];\n"
    "        tensor<int32, [2]> one = const()[name = string(\"one\"), val = tensor<int32, [2]>([1, 1])];\n"
    "        tensor<int32, [4]> pad = const()[name = string(\"pad\"), val = tensor<int32, [4]>([0, 0, 0, 0])];\n"
    "        int32 g = const()[name = string(\"g\"), val = int32(1)];\n"
    "        tensor<fp16, [6, 4, 1, 1]> w = const()[name = string(\"w\"), val = tensor<fp16, [6, 4, 1, 1]>"
    "(BLOBFILE(path = string(\"@model_path/weights/w.bin\"), offset = uint64(64)))];\n"
    "        tensor<fp16, [1, 6, 1, 8]> h = conv(dilations = one, groups = g, pad = pad, pad_type = pt, strides = one, weight = w, x = x)[name = string(\"h\")];\n"
    "        tensor<fp16, [1, 6, 1, 8]> sg = sigmoid(x = h)[name = string(\"sg\")];\n"
    "        tensor<fp16, [1, 6, 1, 8]> sl = mul(x = h, y = sg)[name = string(\"sl\")];\n"
    "        tensor<fp16, [1, 6, 1, 8]> out = add(x = sl, y = bias)[name = string(\"out\")];\n"
    "    } -> (out, h);\n"
    "}\n";

/* IEEE half bits of a value that is exact in fp16 (small multiples of 1/8 here). */
static uint16_t half_bits(float v) {
    if (v == 0.0f) return 0;
    uint16_t sign = v < 0 ? 0x8000 : 0;
    float a = fabsf(v);
    int e = 0;
    while (a >= 2.0f) { a /= 2.0f; e++; }
    while (a < 1.0f) { a *= 2.0f; e--; }
    return (uint16_t)(sign | ((e + 15) << 10) | (uint16_t)((a - 1.0f) * 1024.0f));
}

static float half_value(uint16_t b) {
    int e = (b >> 10) & 0x1f, m = b & 0x3ff;
    float v = e == 0 ? ldexpf((float)m, -24) : ldexpf(1.0f + m / 1024.0f, e - 15);
    return (b & 0x8000) ? -v : v;
}

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* A one-record BLOBFILE: file header, record header at 64, fp16 payload at 128. */
static size_t make_blob(uint8_t *blob, const float *w, size_t n) {
    memset(blob, 0, 128 + 2 * n);
    put_u32(blob, 1);
    put_u32(blob + 4, 2);
    put_u32(blob + 64, 0xDEADBEEFu);
    put_u32(blob + 68, 1); /* fp16 */
    put_u64(blob + 72, 2 * n);
    put_u64(blob + 80, 128);
    for (size_t i = 0; i < n; i++) {
        uint16_t b = half_bits(w[i]);
        blob[128 + 2 * i] = (uint8_t)b;
        blob[129 + 2 * i] = (uint8_t)(b >> 8);
    }
    return 128 + 2 * n;
}

static void check_outputs(anetrain_kernel *k, const float *w, const float *x, const float *bias) {
    float out[COUT * S], h[COUT * S];
    OK(anetrain_kernel_read_output(k, "out", ANETRAIN_DTYPE_FP32, out, COUT * S));
    OK(anetrain_kernel_read_output(k, "h", ANETRAIN_DTYPE_FP32, h, COUT * S));
    double worst = 0;
    for (int o = 0; o < COUT; o++) {
        for (int s = 0; s < S; s++) {
            double acc = 0;
            for (int c = 0; c < CIN; c++) acc += (double)w[o * CIN + c] * x[c * S + s];
            double want = acc / (1.0 + exp(-acc)) + bias[o * S + s];
            double e1 = fabs(h[o * S + s] - acc), e2 = fabs(out[o * S + s] - want);
            if (e1 > worst) worst = e1;
            if (e2 > worst) worst = e2;
        }
    }
    printf("largest difference from the C reference: %g\n", worst);
    EXPECT(worst < 1e-5);
}

int main(int argc, char **argv) {
    EXPECT(argc == 2); /* a scratch directory */
    float w[COUT * CIN], x[CIN * S], bias[COUT * S];
    for (int i = 0; i < COUT * CIN; i++) w[i] = (float)((i * 7) % 11 - 5) / 8.0f;
    for (int i = 0; i < CIN * S; i++) x[i] = (float)((i * 5) % 13 - 6) / 4.0f;
    for (int i = 0; i < COUT * S; i++) bias[i] = (float)(i % 5) / 8.0f;
    uint8_t blob[128 + 2 * COUT * CIN];
    size_t blob_len = make_blob(blob, w, COUT * CIN);

    anetrain_device *dev = NULL;
    OK(anetrain_device_open("cpu", &dev));
    const char *dev_name = NULL;
    OK(anetrain_device_name(dev, &dev_name));
    printf("device: %s\n", dev_name);

    /* Weights in memory. */
    const char *paths[] = {"@model_path/weights/w.bin"};
    const uint8_t *blobs[] = {blob};
    size_t lens[] = {blob_len};
    anetrain_kernel *k = NULL;
    OK(anetrain_kernel_compile_blobs(dev, MIL, paths, blobs, lens, 1, &k));

    size_t n_in = 0, n_out = 0;
    OK(anetrain_kernel_input_count(k, &n_in));
    OK(anetrain_kernel_output_count(k, &n_out));
    EXPECT(n_in == 2 && n_out == 2);
    anetrain_tensor_info info;
    OK(anetrain_kernel_input_info(k, 0, &info));
    EXPECT(strcmp(info.name, "x") == 0 && info.dtype == ANETRAIN_DTYPE_FP16 && info.rank == 4);
    EXPECT(info.shape[0] == 1 && info.shape[1] == CIN && info.shape[2] == 1 && info.shape[3] == S);
    EXPECT(info.len == CIN * S);
    OK(anetrain_kernel_output_info(k, 1, &info));
    EXPECT(strcmp(info.name, "h") == 0 && info.len == COUT * S);

    OK(anetrain_kernel_write_input(k, "x", ANETRAIN_DTYPE_FP32, x, CIN * S));
    OK(anetrain_kernel_write_input(k, "bias", ANETRAIN_DTYPE_FP32, bias, COUT * S));
    OK(anetrain_kernel_run(k));
    check_outputs(k, w, x, bias);

    /* fp16 in and out: the inputs are exact in fp16, so the outputs round like the reference. */
    uint16_t xh[CIN * S], outh[COUT * S];
    for (int i = 0; i < CIN * S; i++) xh[i] = half_bits(x[i]);
    OK(anetrain_kernel_write_input(k, "x", ANETRAIN_DTYPE_FP16, xh, CIN * S));
    OK(anetrain_kernel_run(k));
    check_outputs(k, w, x, bias);
    OK(anetrain_kernel_read_output(k, "out", ANETRAIN_DTYPE_FP16, outh, COUT * S));
    float out[COUT * S];
    OK(anetrain_kernel_read_output(k, "out", ANETRAIN_DTYPE_FP32, out, COUT * S));
    for (int i = 0; i < COUT * S; i++) EXPECT(fabsf(half_value(outh[i]) - out[i]) <= fabsf(out[i]) / 1024.0f + 1e-7f);
    anetrain_kernel_free(k);

    /* Weights from a directory: @model_path/ is the directory given. */
    char dir[1024], file[1100];
    snprintf(dir, sizeof dir, "%s/weights", argv[1]);
    mkdir(dir, 0755);
    snprintf(file, sizeof file, "%s/w.bin", dir);
    FILE *f = fopen(file, "wb");
    EXPECT(f != NULL);
    EXPECT(fwrite(blob, 1, blob_len, f) == blob_len);
    fclose(f);
    OK(anetrain_kernel_compile(dev, MIL, argv[1], &k));
    OK(anetrain_kernel_write_input(k, "x", ANETRAIN_DTYPE_FP32, x, CIN * S));
    OK(anetrain_kernel_write_input(k, "bias", ANETRAIN_DTYPE_FP32, bias, COUT * S));
    OK(anetrain_kernel_run(k));
    check_outputs(k, w, x, bias);

    /* Every error path returns a code and a message, and leaves the kernel usable. */
    anetrain_kernel *bad = NULL;
    FAILS(anetrain_kernel_compile(dev, "program(1.3) { func main<ios18>(", NULL, &bad), ANETRAIN_ERR_MIL, "MIL text");
    EXPECT(bad == NULL);
    FAILS(anetrain_kernel_compile(dev, MIL, "/nonexistent/anetrain", &bad), ANETRAIN_ERR_IO, "cannot be read");
    FAILS(anetrain_kernel_compile(dev, MIL, NULL, &bad), ANETRAIN_ERR_MIL, "@model_path/weights/w.bin");
    FAILS(anetrain_kernel_write_input(k, "x", ANETRAIN_DTYPE_FP32, x, CIN * S - 1), ANETRAIN_ERR_SIZE, "pass exactly 32 values");
    FAILS(anetrain_kernel_read_output(k, "out", ANETRAIN_DTYPE_FP32, out, 3), ANETRAIN_ERR_SIZE, "48 elements");
    FAILS(anetrain_kernel_write_input(k, "y", ANETRAIN_DTYPE_FP32, x, CIN * S), ANETRAIN_ERR_NOT_FOUND, "no input named `y`");
    FAILS(anetrain_kernel_read_output(k, "sg", ANETRAIN_DTYPE_FP32, out, COUT * S), ANETRAIN_ERR_NOT_FOUND, "no output named `sg`");
    FAILS(anetrain_kernel_output_info(k, 2, &info), ANETRAIN_ERR_NOT_FOUND, "out of range");
    FAILS(anetrain_kernel_write_input(k, "x", ANETRAIN_DTYPE_FP32, NULL, CIN * S), ANETRAIN_ERR_INVALID_ARGUMENT, "`data` is NULL");
    FAILS(anetrain_kernel_write_input(k, "x", ANETRAIN_DTYPE_OTHER, x, CIN * S), ANETRAIN_ERR_INVALID_ARGUMENT, "pass ANETRAIN_DTYPE_FP32");
    FAILS(anetrain_kernel_read_output(k, "out", 42, out, COUT * S), ANETRAIN_ERR_INVALID_ARGUMENT, "buffer dtype 42");
    FAILS(anetrain_kernel_run(NULL), ANETRAIN_ERR_INVALID_ARGUMENT, "`k` is NULL");
    FAILS(anetrain_device_open("gpu", &dev), ANETRAIN_ERR_INVALID_ARGUMENT, "choose one of auto, cpu, cpu-f16, ane, reference");
    OK(anetrain_kernel_run(k));
    check_outputs(k, w, x, bias);

    anetrain_kernel_free(k);
    anetrain_device_free(dev);
    anetrain_kernel_free(NULL);
    anetrain_device_free(NULL);
    printf("kernel: all checks passed\n");
    return 0;
}
