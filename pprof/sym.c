/* SPDX-License-Identifier: PostgreSQL
 *
 * ELF symbol tables for the profiles: see sym.h.
 */
#include "pprof/sym.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/mem.h"

typedef struct rp_sym_entry {
    uintptr_t value;
    size_t size;
    uint32_t name; /* offset into the module's strtab copy */
} rp_sym_entry;

struct rp_sym {
    rp_sym_module *mods;
    size_t nmods, cap;
    unsigned long long adds, subs; /* dl_iterate_phdr generation of the list */
};

static pthread_mutex_t sym_lock = PTHREAD_MUTEX_INITIALIZER;
static rp_sym sym_table;

static void module_free(rp_sym_module *m)
{
    free(m->path);
    free(m->build_id);
    free(m->syms);
    free(m->strtab);
    rp_lines_close(m->lines);
    m->lines = NULL;
}

static char *hex_of(const unsigned char *p, size_t n)
{
    char *s = rp_malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = "0123456789abcdef"[p[i] >> 4];
        s[2 * i + 1] = "0123456789abcdef"[p[i] & 15];
    }
    s[2 * n] = '\0';
    return s;
}

/* GNU build-id from a PT_NOTE segment already mapped at p (len bytes). */
static char *note_build_id(const unsigned char *p, size_t len)
{
    size_t off = 0;
    while (off + sizeof(ElfW(Nhdr)) <= len) {
        const ElfW(Nhdr) *nh = (const void *)(p + off);
        size_t name_sz = (nh->n_namesz + 3) & ~(size_t)3, desc_sz = (nh->n_descsz + 3) & ~(size_t)3;
        const unsigned char *name = p + off + sizeof(*nh);
        if (off + sizeof(*nh) + name_sz + desc_sz > len)
            break;
        if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0)
            return hex_of(name + name_sz, nh->n_descsz);
        off += sizeof(*nh) + name_sz + desc_sz;
    }
    return NULL;
}

static char *main_path(void)
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n <= 0)
        return rp_strdup("pgreaper");
    buf[n] = '\0';
    return rp_strdup(buf);
}

static void module_segments(rp_sym_module *m, const struct dl_phdr_info *info)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && m->limit == 0) {
            m->start = (m->bias + ph->p_vaddr) & ~(page - 1);
            m->limit = (m->bias + ph->p_vaddr + ph->p_memsz + page - 1) & ~(page - 1);
            m->file_offset = ph->p_offset & ~(page - 1);
        } else if (ph->p_type == PT_NOTE && !m->build_id) {
            m->build_id = note_build_id((const void *)(m->bias + ph->p_vaddr), ph->p_memsz);
        }
    }
}

static int collect_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    rp_sym *s = arg;
    s->adds = info->dlpi_adds;
    s->subs = info->dlpi_subs;
    rp_grow((void **)&s->mods, &s->cap, s->nmods + 1, sizeof(*s->mods));
    rp_sym_module *m = &s->mods[s->nmods];
    memset(m, 0, sizeof(*m));
    m->bias = info->dlpi_addr;
    if (s->nmods == 0) {
        m->is_main = true;
        m->path = main_path();
    } else if (strncmp(info->dlpi_name, "linux-vdso", 10) == 0) {
        m->path = rp_strdup("[vdso]");
    } else {
        m->path = rp_strdup(info->dlpi_name);
    }
    module_segments(m, info);
    if (!m->build_id)
        m->build_id = rp_strdup("");
    if (m->limit == 0 || (!m->is_main && info->dlpi_name[0] == '\0'))
        module_free(m); /* nothing executable, or an unnamed extra object */
    else
        s->nmods++;
    return 0;
}

static int read_generation(struct dl_phdr_info *info, size_t size, void *arg)
{
    unsigned long long *g = arg;
    g[0] = info->dlpi_adds;
    g[1] = info->dlpi_subs;
    return 1;
}

static void refresh(rp_sym *s)
{
    unsigned long long g[2] = {0, 0};
    dl_iterate_phdr(read_generation, g);
    if (s->nmods && g[0] == s->adds && g[1] == s->subs)
        return;
    for (size_t i = 0; i < s->nmods; i++)
        module_free(&s->mods[i]);
    s->nmods = 0;
    dl_iterate_phdr(collect_module, s);
}

rp_sym *rp_sym_acquire(void)
{
    pthread_mutex_lock(&sym_lock);
    refresh(&sym_table);
    return &sym_table;
}

void rp_sym_release(rp_sym *s)
{
    (void)s;
    pthread_mutex_unlock(&sym_lock);
}

size_t rp_sym_nmodules(const rp_sym *s)
{
    return s->nmods;
}

const rp_sym_module *rp_sym_module_at(const rp_sym *s, size_t i)
{
    return i < s->nmods ? &s->mods[i] : NULL;
}

static int cmp_entry(const void *a, const void *b)
{
    const rp_sym_entry *x = a, *y = b;
    return x->value < y->value ? -1 : x->value > y->value;
}

/* Bounds-checked view of an ELF image (a mapped file or the vDSO in memory). */
typedef struct elf_view {
    const unsigned char *p;
    size_t len;
} elf_view;

static const void *view_at(const elf_view *v, size_t off, size_t n)
{
    return off <= v->len && n <= v->len - off ? v->p + off : NULL;
}

static const ElfW(Shdr) * find_section(const elf_view *v, const ElfW(Ehdr) * eh, uint32_t type)
{
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        const ElfW(Shdr) *sh = view_at(v, eh->e_shoff + (size_t)i * sizeof(*sh), sizeof(*sh));
        if (sh && sh->sh_type == type && sh->sh_size > 0)
            return sh;
    }
    return NULL;
}

static void take_symbols(rp_sym_module *m, const elf_view *v, const ElfW(Ehdr) * eh,
                         const ElfW(Shdr) * symsh)
{
    const ElfW(Shdr) *strsh =
        symsh->sh_link < eh->e_shnum
            ? view_at(v, eh->e_shoff + (size_t)symsh->sh_link * sizeof(*strsh), sizeof(*strsh))
            : NULL;
    const ElfW(Sym) *syms = view_at(v, symsh->sh_offset, symsh->sh_size);
    const char *str = strsh ? view_at(v, strsh->sh_offset, strsh->sh_size) : NULL;
    if (!syms || !str || strsh->sh_size == 0)
        return;
    size_t n = symsh->sh_size / sizeof(ElfW(Sym));
    m->strtab = rp_malloc(strsh->sh_size);
    memcpy(m->strtab, str, strsh->sh_size);
    m->strtab[strsh->sh_size - 1] = '\0';
    m->syms = rp_calloc(n ? n : 1, sizeof(rp_sym_entry));
    for (size_t i = 0; i < n; i++) {
        int type = ELF64_ST_TYPE(syms[i].st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || syms[i].st_shndx == SHN_UNDEF ||
            syms[i].st_value == 0 || syms[i].st_name >= strsh->sh_size)
            continue;
        m->syms[m->nsyms++] = (rp_sym_entry){syms[i].st_value, syms[i].st_size, syms[i].st_name};
    }
    qsort(m->syms, m->nsyms, sizeof(rp_sym_entry), cmp_entry);
}

static void parse_image(rp_sym_module *m, const elf_view *v)
{
    const ElfW(Ehdr) *eh = view_at(v, 0, sizeof(*eh));
    if (!eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_shentsize != sizeof(ElfW(Shdr)))
        return;
    const ElfW(Shdr) *symsh = find_section(v, eh, SHT_SYMTAB);
    if (!symsh)
        symsh = find_section(v, eh, SHT_DYNSYM);
    if (symsh)
        take_symbols(m, v, eh, symsh);
}

static void load_symbols(rp_sym_module *m)
{
    m->loaded = true;
    if (strcmp(m->path, "[vdso]") == 0) {
        uintptr_t base = getauxval(AT_SYSINFO_EHDR);
        if (base) {
            elf_view v = {(const void *)base, 2 * (size_t)sysconf(_SC_PAGESIZE)};
            parse_image(m, &v);
        }
        return;
    }
    int fd = open(m->path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0 && st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            elf_view v = {p, (size_t)st.st_size};
            parse_image(m, &v);
            munmap(p, (size_t)st.st_size);
        }
    }
    close(fd);
}

static int find_module(const rp_sym *s, uintptr_t pc)
{
    for (size_t i = 0; i < s->nmods; i++)
        if (pc >= s->mods[i].start && pc < s->mods[i].limit)
            return (int)i;
    return -1;
}

int rp_sym_lookup(rp_sym *s, uintptr_t pc, rp_sym_result *res)
{
    *res = (rp_sym_result){.module = find_module(s, pc)};
    if (res->module < 0)
        return -ENOENT;
    rp_sym_module *m = &s->mods[res->module];
    if (!m->loaded)
        load_symbols(m);
    uintptr_t addr = pc - m->bias;
    res->file_off = addr;
    size_t lo = 0, hi = m->nsyms; /* first entry with value > addr */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->syms[mid].value <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return -ENOENT;
    const rp_sym_entry *e = &m->syms[lo - 1];
    if (addr >= e->value + (e->size ? e->size : 1))
        return -ENOENT;
    res->name = m->strtab + e->name;
    res->sym_off = addr - e->value;
    return 0;
}

int rp_sym_lines(rp_sym *s, uintptr_t pc, rp_line_frame *out, int max)
{
    int i = find_module(s, pc);
    if (i < 0)
        return 0;
    rp_sym_module *m = &s->mods[i];
    if (!m->lines_tried) {
        m->lines_tried = true;
        m->lines = m->is_main ? rp_lines_open(m->path, m->build_id) : NULL;
    }
    return m->lines ? rp_lines_frames(m->lines, pc - m->bias, out, max) : 0;
}
