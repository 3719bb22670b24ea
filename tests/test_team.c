/* test_team.c - evaluation of one image by a team of threads (team.h, kernels.c, conv.c) gives
 * the same values to the bit as on one thread: the GEMM's parts, each conv path's members, the
 * whole CNN at every team size, with Winograd off (convs as single items) and at the lower
 * kernel levels; and st_model_forward at batch 1, which switches between the two as it times
 * them. */
#include "check.h"
#include "conv.h"
#include "gemm.h"
#include "kernels.h"
#include "layers.h"
#include "model.h"
#include "stride.h"

#include <omp.h>
#include <string.h>

static void fill(float *x, size_t n, st_rng *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 2.0f * st_rng_uniform(r) - 1.0f;
}

/* Every part of st_sgemm_part together is st_sgemm_st, bit for bit, whatever the number of
 * parts; the ranges they report tile C exactly. */
static void test_sgemm_parts(void)
{
    const int shapes[][5] = {
        /* M, N, K, transa, transb: the CNN's fc1 at batch 1 (dot kernel), fc2, blocked GEMMs
         * with partial tiles, more parts than register blocks, transposes */
        {1, 128, 3136, 0, 1}, {1, 10, 128, 0, 1}, {50, 37, 20, 0, 0}, {3, 5, 7, 1, 1},
        {40, 2, 300, 0, 1},   {2, 70, 33, 1, 0},  {17, 1, 9, 0, 0},
    };
    st_rng r;
    st_rng_seed(&r, 3);
    int cases = 0;
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        int M = shapes[t][0], N = shapes[t][1], K = shapes[t][2], ta = shapes[t][3],
            tb = shapes[t][4];
        int lda = ta ? M : K, ldb = tb ? K : N;
        size_t mk = (size_t)M * K, kn = (size_t)K * N, mn = (size_t)M * N;
        float *A = malloc(sizeof(float) * mk), *B = malloc(sizeof(float) * kn);
        float *C0 = malloc(sizeof(float) * mn), *C1 = malloc(sizeof(float) * mn);
        char *hit = malloc((size_t)M * N);
        fill(A, (size_t)M * K, &r), fill(B, (size_t)K * N, &r), fill(C0, (size_t)M * N, &r);
        memcpy(C1, C0, sizeof(float) * (size_t)M * N);
        float beta = t % 2 ? 0.5f : 0.0f;
        st_sgemm_st(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C0, N);
        for (int parts = 1; parts <= 5; parts++) {
            float *C = malloc(sizeof(float) * (size_t)M * N);
            memcpy(C, C1, sizeof(float) * (size_t)M * N);
            memset(hit, 0, (size_t)M * N);
            for (int p = parts - 1; p >= 0; p--) { /* in any order */
                int rg[4];
                st_sgemm_part(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, beta, C, N, p, parts, rg);
                for (int i = rg[0]; i < rg[1]; i++)
                    for (int j = rg[2]; j < rg[3]; j++)
                        hit[(size_t)i * N + j]++;
            }
            int once = 1;
            for (size_t i = 0; i < (size_t)M * N; i++)
                once &= hit[i] == 1;
            CHECKF(once, "%dx%dx%d in %d parts: ranges do not tile C", M, N, K, parts);
            CHECKF(memcmp(C, C0, sizeof(float) * (size_t)M * N) == 0,
                   "%dx%dx%d in %d parts differs from st_sgemm_st", M, N, K, parts);
            free(C);
            cases++;
        }
        free(A), free(B), free(C0), free(C1), free(hit);
    }
    printf("  %d products in 1 to 5 parts\n", cases);
}

/* st_conv_forward_member by teams of 1 to 4 threads against st_conv2d_forward_affine on one
 * image (with a weight cache, as evaluation runs it), bit for bit. */
static void test_conv_members(void)
{
    const int cases[][6] = {
        /* C, H, W, OC, K, pad: the CNN's three convs; one channel with partial tiles, more
         * channels than a tile, no padding; Winograd with odd sizes (tiles half outside), a
         * single row, more input than output channels */
        {1, 28, 28, 16, 5, 2}, {16, 14, 14, 32, 3, 1}, {32, 7, 7, 64, 3, 1}, {1, 9, 7, 13, 3, 0},
        {1, 9, 9, 40, 3, 1},   {8, 5, 9, 16, 3, 1},    {16, 1, 3, 8, 3, 1},  {24, 4, 2, 8, 3, 1},
    };
    st_rng r;
    st_rng_seed(&r, 8);
    int runs = 0;
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        int C = cases[t][0], H = cases[t][1], W = cases[t][2], OC = cases[t][3], K = cases[t][4],
            pad = cases[t][5];
        int OH = st_conv_out_size(H, K, 1, pad), OW = st_conv_out_size(W, K, 1, pad);
        st_conv_shape s = {C, H, W, OC, K, K, 1, pad, OH, OW, 0};
        size_t nin = (size_t)C * H * W, nout = (size_t)OC * OH * OW, nw = (size_t)OC * C * K * K;
        float *x = malloc(nin * 4), *w = malloc(nw * 4), *scale = malloc(OC * 4),
              *shift = malloc(OC * 4);
        float *y0 = malloc(nout * 4), *y1 = malloc(nout * 4);
        size_t nc = st_conv_wcache_floats(&s);
        float *cache = calloc(nc ? nc : 1, 4), *ws = malloc(st_conv_ws_floats(&s, 1, 4) * 4);
        fill(x, nin, &r), fill(w, nw, &r), fill(scale, OC, &r), fill(shift, OC, &r);
        CHECKF(st_conv_member_fits(&s, nc > 0), "case %zu has no team path", t);
        int relu = (int)(t % 2);
        const float *sc = t % 3 == 2 ? NULL : scale; /* (NULL: a conv's bias, no batch norm) */
        /* pooled: every other round, where there is a 2x2 window */
        int PH = OH / 2, PW = OW / 2;
        size_t np = (size_t)OC * PH * PW;
        float *p0 = malloc(np * 4 + 4), *p1 = malloc(np * 4 + 4);
        CHECK(st_conv2d_forward_affine(y0, NULL, x, w, sc, shift, &s, 1, ws, 4, relu,
                                       nc ? cache : NULL) == 0);
        if (np)
            CHECK(st_conv2d_forward_affine(y1, p0, x, w, sc, shift, &s, 1, ws, 4, relu,
                                           nc ? cache : NULL) == 1);
        st_conv_member_weights(w, &s, nc ? cache : NULL);
        for (int round = 0; round < (np ? 8 : 4); round++) {
            int size = round % 4 + 1, pool = round >= 4;
            memset(y1, 0, nout * 4);
            memset(p1, 0, np * 4);
            st_team team;
            atomic_init(&team.next, 0);
            atomic_init(&team.done, 0);
            int phases_ok = 1;
#pragma omp parallel num_threads(size)
            {
                st_member me = {&team, omp_get_thread_num(), omp_get_num_threads(), 0, -1};
                st_conv_forward_member(y1, pool ? p1 : NULL, x, w, sc, shift, &s, ws, 4, relu,
                                       cache, &me);
                st_team_wait(&me, me.base); /* all of it, as the next layer would */
                if (me.ticket >= 0 && me.ticket < me.base)
#pragma omp atomic write
                    phases_ok = 0;
            }
            CHECKF(phases_ok, "case %zu, %d members: a ticket left unused", t, size);
            CHECKF(pool ? memcmp(p0, p1, np * 4) == 0 : memcmp(y0, y1, nout * 4) == 0,
                   "conv C=%d %dx%d OC=%d k=%d, %d members%s: differs from one thread", C, H, W,
                   OC, K, size, pool ? ", pooled" : "");
            runs++;
        }
        free(x), free(w), free(scale), free(shift), free(y0), free(y1), free(cache), free(ws);
        free(p0), free(p1);
    }
    /* no team path (the model runs them whole, on one member): one channel whose weight panels
     * would not fit in a member's scratch; Winograd without a cache */
    st_conv_shape small = {1, 5, 6, 40, 3, 3, 1, 1, 5, 6, 0};
    st_conv_shape wino = {16, 14, 14, 32, 3, 3, 1, 1, 14, 14, 0};
    CHECK(!st_conv_member_fits(&small, 0) && !st_conv_member_fits(&wino, 0));
    printf("  %d conv shapes by teams of 1 to 4, pooled or not (%d runs)\n",
           (int)(sizeof cases / sizeof *cases), runs);
}

/* A CNN in evaluation mode with batch norms whose running statistics are not the initial ones. */
static st_model *eval_cnn(st_error *err)
{
    st_model *m = st_model_create(ST_MODEL_CNN, 4, 11, err);
    if (!m)
        return NULL;
    st_rng r;
    st_rng_seed(&r, 21);
    for (int i = 0; i < m->nlayers; i++) {
        st_layer *l = &m->layers[i];
        if (l->kind != ST_L_BN)
            continue;
        for (int c = 0; c < l->in_c; c++) {
            l->running_mean[c] = 0.2f * (2.0f * st_rng_uniform(&r) - 1.0f);
            l->running_var[c] = 0.5f + st_rng_uniform(&r);
            l->w[c] = 0.5f + st_rng_uniform(&r);
            l->b[c] = 0.1f * (2.0f * st_rng_uniform(&r) - 1.0f);
        }
    }
    st_model_set_training(m, 0);
    return m;
}

/* One image of uniform random pixels. */
static void random_image(float *x, uint64_t seed)
{
    st_rng r;
    st_rng_seed(&r, seed);
    for (int i = 0; i < 784; i++)
        x[i] = st_rng_uniform(&r);
}

/* Layer outputs of one image by st_forward_team (size members) or layer by layer (size 1). */
static float *outputs(st_model *m, const float *x, int size, size_t *n)
{
    size_t total = 0;
    for (int i = 0; i < m->nlayers; i++)
        total += m->layers[i].out_size;
    for (int i = 0; i < m->nlayers; i++)
        memset(m->layers[i].out, 0, sizeof(float) * m->layers[i].out_size);
    if (size > 1)
        st_forward_team(m, x, size);
    else {
        const float *in = x;
        for (int i = 0; i < m->nlayers; i++) {
            st_layer_forward(m, &m->layers[i], in, 1);
            in = m->layers[i].out;
        }
    }
    float *all = malloc(sizeof(float) * total), *p = all;
    for (int i = 0; i < m->nlayers; i++) {
        memcpy(p, m->layers[i].out, sizeof(float) * m->layers[i].out_size);
        p += m->layers[i].out_size;
    }
    *n = total;
    return all;
}

/* The CNN's every layer output by teams of 2 to 4 against one thread, bit for bit: as it runs,
 * with Winograd off (conv2 and conv3 then run whole, as single items, on whichever member takes
 * them), and at each lower kernel level. */
static void test_team_forward(void)
{
    st_error err;
    st_model *m = eval_cnn(&err);
    CHECK(m != NULL);
    if (!m)
        return;
    int saved = st_get_threads();
    st_set_threads(4);
    float x[784];
    random_image(x, 2);
    int runs = 0;
    for (int level = st_cpu_max_level(); level >= 0; level--)
        for (int wino = 1; wino >= 0; wino--) {
            st_cpu_force_level(level);
            st_conv_set_winograd(wino);
            size_t n0, n1;
            float *solo = outputs(m, x, 1, &n0);
            for (int size = 2; size <= 4; size++) {
                float *team = outputs(m, x, size, &n1);
                CHECKF(n0 == n1 && memcmp(solo, team, sizeof(float) * n0) == 0,
                       "level %d, Winograd %d, %d members: differs from one thread", level, wino,
                       size);
                free(team);
                runs++;
            }
            free(solo);
        }
    st_cpu_force_level(-1);
    st_conv_set_winograd(1);
    printf("  CNN, every layer's output: %d team runs, each the same as one thread's\n", runs);
    st_set_threads(saved);
    st_model_free(m);
}

/* st_model_forward at batch 1 with 2 threads: the team serves (st_team_size: no more members
 * than threads or cores), the model times it against one thread and switches between them; every
 * call's logits are the same to the bit. */
static void test_forward_batch1_switching(void)
{
    st_error err;
    st_model *m = eval_cnn(&err);
    CHECK(m != NULL);
    if (!m)
        return;
    int saved = st_get_threads();
    st_set_threads(4);
    int size = omp_get_num_procs() < 2 ? 1 : 2; /* (no more members than cores) */
    CHECK(st_team_size(m, 1) == (omp_get_num_procs() < 4 ? size : 4));
    st_set_threads(2);
    CHECK(st_team_size(m, 1) == size && st_team_size(m, 2) == 1);
    st_model *mlp = st_model_create(ST_MODEL_MLP, 1, 1, &err);
    CHECK(mlp != NULL);
    if (mlp) {
        st_model_set_training(mlp, 0);
        CHECK(st_team_size(mlp, 1) == 1); /* too little work to share */
        st_model_free(mlp);
    }
    float x[784];
    random_image(x, 9);
    size_t n;
    float *solo = outputs(m, x, 1, &n);
    const float *first = solo + n - ST_NUM_CLASSES;
    int same = 1;
    for (int call = 0; call < 64; call++) {
        const float *logits;
        CHECK(st_model_forward(m, x, 1, &logits, &err) == 0);
        same &= memcmp(logits, first, sizeof(float) * ST_NUM_CLASSES) == 0;
    }
    const st_b1_timer *b = &m->b1;
    printf("  64 calls at batch 1: %u alone (%.1f us), %u by the team (%.1f us)\n", b->runs[0],
           b->us[0], b->runs[1], b->us[1]);
    CHECK(same);
    if (size > 1) {
        CHECK(b->runs[0] >= 8 && b->runs[1] >= 8 && b->runs[0] + b->runs[1] == 64);
        CHECK(b->us[0] > 0.0 && b->us[1] > 0.0); /* both ways timed */
    } else { /* one core: always alone, nothing timed */
        CHECK(b->runs[0] + b->runs[1] == 0);
    }
    free(solo);
    st_set_threads(saved);
    st_model_free(m);
}

/* The batch-1 timer with made-up times (st_b1_choose, st_b1_record): t the clock (us), the
 * team's cost per image team_us(t), alone's solo_us; returns images run by the team among those
 * begun in [from, to). */
typedef double (*cost_fn)(double t);

static unsigned simulate_b1(st_b1_timer *b, double *t, double to, cost_fn team_us, double solo_us,
                            double from, unsigned *images)
{
    unsigned by_team = 0;
    *images = 0;
    while (*t < to) {
        int team = st_b1_choose(b, *t);
        double us = team ? team_us(*t) : solo_us;
        if (*t >= from) {
            by_team += (unsigned)team;
            (*images)++;
        }
        *t += us;
        st_b1_record(b, team, us, *t);
    }
    return by_team;
}

static double team_busy_first_ms(double t) /* the other core busy for the first 5 ms */
{
    return t < 5000.0 ? 300.0 : 60.0;
}

static double team_always_slow(double t)
{
    (void)t;
    return 200.0;
}

static double team_fast_after_1s(double t)
{
    return t < 1e6 ? 200.0 : 60.0;
}

/* A team trial lost to a moment when the other core was busy is tried again within
 * milliseconds; a team that keeps losing is tried rarely (its trials cost the images they run);
 * once it is faster again, it serves within the longest wait. */
static void test_b1_timer(void)
{
    st_b1_timer b = {.size = 2};
    double t = 0.0;
    unsigned n, team = simulate_b1(&b, &t, 20000.0, team_busy_first_ms, 100.0, 10000.0, &n);
    printf("  busy first: by the team %u of the %u images begun in 10-20 ms\n", team, n);
    CHECK(n > 0 && team >= n * 9 / 10);

    b = (st_b1_timer){.size = 2}, t = 0.0;
    team = simulate_b1(&b, &t, 1e6, team_always_slow, 100.0, 0.0, &n);
    printf("  team always slower: by the team %u of %u images in 1 s\n", team, n);
    CHECK(n > 0 && team <= n / 50);

    b = (st_b1_timer){.size = 2}, t = 0.0;
    simulate_b1(&b, &t, 1e6, team_fast_after_1s, 100.0, 0.0, &n);
    team = simulate_b1(&b, &t, 1.5e6, team_fast_after_1s, 100.0, 1.25e6, &n);
    printf("  team faster after 1 s: by the team %u of the %u images begun in 1.25-1.5 s\n", team,
           n);
    CHECK(n > 0 && team >= n * 9 / 10);
}

int main(void)
{
    printf("kernels: %s\n", st_kernel_name());
    RUN(test_sgemm_parts);
    RUN(test_conv_members);
    RUN(test_team_forward);
    RUN(test_forward_batch1_switching);
    RUN(test_b1_timer);
    return CHECK_DONE();
}
