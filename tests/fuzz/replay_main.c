/* SPDX-License-Identifier: PostgreSQL
 *
 * Replays every file of the corpus folders given as arguments through the fuzz target,
 * as a normal test (one TAP line per file). With -Dfuzzing=true the target is linked
 * with libFuzzer instead.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    int n = 0;
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d) {
            printf("not ok %d - cannot open corpus %s\n", ++n, argv[a]);
            continue;
        }
        char *names[4096];
        size_t count = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL && count < 4096) {
            if (e->d_name[0] != '.')
                names[count++] = strdup(e->d_name);
        }
        closedir(d);
        qsort(names, count, sizeof(char *), cmp);
        for (size_t i = 0; i < count; i++) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[a], names[i]);
            FILE *f = fopen(path, "rb");
            if (!f) {
                printf("not ok %d - %s\n", ++n, path);
                free(names[i]);
                continue;
            }
            static uint8_t buf[1 << 20];
            size_t len = fread(buf, 1, sizeof(buf), f);
            fclose(f);
            LLVMFuzzerTestOneInput(buf, len);
            printf("ok %d - %s\n", ++n, names[i]);
            free(names[i]);
        }
    }
    printf("1..%d\n", n);
    return 0;
}
