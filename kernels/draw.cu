// Condition image: the mesh and shoulder segments drawn with OpenCV cv::line LINE_8 semantics,
// pixel for pixel what src/draw/raster.rs and src/draw/condition.rs draw on the CPU.
//
// Three kernels, launched in this order on one stream:
//   1. draw_clear     one thread per pixel: order[i] = 0.
//   2. draw_segments  one thread per segment: walks exactly the pixels raster.rs writes for
//                     that segment and records atomicMax(order[pixel], segment + 1). Segments
//                     come in drawing order, so the largest index is the line drawn last, the
//                     one that wins on the CPU canvas ("later lines overwrite earlier ones").
//   3. draw_colour    one thread per pixel: the winning segment's RGB colour, black for 0.
//
// Integer arithmetic is 64-bit where raster.rs uses i64, doubles where it uses f64; compiled
// with --fmad=false (no fused multiply-add may change a rounding). Self-contained: NVRTC gets
// no include paths.

struct Segment {
    int a;          // first point (index into the 478 face + 18 shoulder points)
    int b;          // second point
    int thickness;  // <= 1: the thin Bresenham line
    unsigned int rgb;  // 0xRRGGBB
};

struct DrawCanvas {
    unsigned int* order;
    long long w;
    long long h;
    unsigned int id;  // segment index + 1
};

#define DRAW_XY_SHIFT 16
#define DRAW_XY_ONE 65536LL
#define DRAW_HALF 32768LL

static __device__ __forceinline__ void draw_put(const DrawCanvas& c, long long x, long long y) {
    if (x >= 0 && x < c.w && y >= 0 && y < c.h) {
        atomicMax(&c.order[y * c.w + x], c.id);
    }
}

static __device__ void draw_hline(const DrawCanvas& c, long long y, long long x1, long long x2) {
    if (y < 0 || y >= c.h) {
        return;
    }
    if (x1 < 0) {
        x1 = 0;
    }
    if (x2 > c.w - 1) {
        x2 = c.w - 1;
    }
    for (long long x = x1; x <= x2; ++x) {
        atomicMax(&c.order[y * c.w + x], c.id);
    }
}

// OpenCV clipLine: intersections truncated toward zero, computed in double.
static __device__ __forceinline__ long long draw_cut(long long num, long long mul, long long den) {
    return (long long)((double)num * (double)mul / (double)den);
}

static __device__ __forceinline__ int draw_code(const long long* p, long long right, long long bottom) {
    return (p[0] < 0) + (p[0] > right) * 2 + (p[1] < 0) * 4 + (p[1] > bottom) * 8;
}

static __device__ bool draw_clip_line(long long w, long long h, long long* p1, long long* p2) {
    if (w <= 0 || h <= 0) {
        return false;
    }
    const long long right = w - 1;
    const long long bottom = h - 1;
    int c1 = draw_code(p1, right, bottom);
    int c2 = draw_code(p2, right, bottom);
    if ((c1 & c2) == 0 && (c1 | c2) != 0) {
        if (c1 & 12) {
            const long long a = c1 < 8 ? 0 : bottom;
            p1[0] += draw_cut(a - p1[1], p2[0] - p1[0], p2[1] - p1[1]);
            p1[1] = a;
            c1 = (p1[0] < 0) + (p1[0] > right) * 2;
        }
        if (c2 & 12) {
            const long long a = c2 < 8 ? 0 : bottom;
            p2[0] += draw_cut(a - p2[1], p2[0] - p1[0], p2[1] - p1[1]);
            p2[1] = a;
            c2 = (p2[0] < 0) + (p2[0] > right) * 2;
        }
        if ((c1 & c2) == 0 && (c1 | c2) != 0) {
            if (c1) {
                const long long a = c1 == 1 ? 0 : right;
                p1[1] += draw_cut(a - p1[0], p2[1] - p1[1], p2[0] - p1[0]);
                p1[0] = a;
                c1 = 0;
            }
            if (c2) {
                const long long a = c2 == 1 ? 0 : right;
                p2[1] += draw_cut(a - p2[0], p2[1] - p1[1], p2[0] - p1[0]);
                p2[0] = a;
                c2 = 0;
            }
        }
    }
    return (c1 | c2) == 0;
}

// Thickness 1: the 8-connected walk of LineIterator, left to right, after clipLine.
static __device__ void draw_thin_line(const DrawCanvas& c, int p1x, int p1y, int p2x, int p2y) {
    long long a[2] = {p1x, p1y};
    long long b[2] = {p2x, p2y};
    const bool out_a = a[0] < 0 || a[0] >= c.w || a[1] < 0 || a[1] >= c.h;
    const bool out_b = b[0] < 0 || b[0] >= c.w || b[1] < 0 || b[1] >= c.h;
    if ((out_a || out_b) && !draw_clip_line(c.w, c.h, a, b)) {
        return;
    }
    long long dx = b[0] - a[0];
    long long dy = b[1] - a[1];
    long long sx = a[0];
    long long sy = a[1];
    if (dx < 0) {
        dx = -dx;
        dy = -dy;
        sx = b[0];
        sy = b[1];
    }
    const int y_step = dy < 0 ? -1 : 1;
    if (dy < 0) {
        dy = -dy;
    }
    int x = (int)sx;
    int y = (int)sy;
    const bool y_major = dy > dx;
    const long long major = y_major ? dy : dx;
    const long long minor = y_major ? dx : dy;
    long long err = major - 2 * minor;
    for (long long i = 0; i <= major; ++i) {
        draw_put(c, x, y);
        const bool step_minor = err < 0;
        err += -2 * minor + (step_minor ? 2 * major : 0);
        if (y_major) {
            y += y_step;
            if (step_minor) {
                x += 1;
            }
        } else {
            x += 1;
            if (step_minor) {
                y += y_step;
            }
        }
    }
}

// Fixed-point (16-bit fraction) outline walker (OpenCV Line2).
static __device__ void draw_fixed_line(const DrawCanvas& c, const long long* p1, const long long* p2) {
    long long a[2] = {p1[0], p1[1]};
    long long b[2] = {p2[0], p2[1]};
    if (!draw_clip_line(c.w * DRAW_XY_ONE, c.h * DRAW_XY_ONE, a, b)) {
        return;
    }
    long long dx = b[0] - a[0];
    long long dy = b[1] - a[1];
    const long long ax = dx < 0 ? -dx : dx;
    const long long ay = dy < 0 ? -dy : dy;
    long long x_step;
    long long y_step;
    long long ecount;
    if (ax > ay) {
        if (dx < 0) {
            dy = -dy;
            const long long t0 = a[0], t1 = a[1];
            a[0] = b[0];
            a[1] = b[1];
            b[0] = t0;
            b[1] = t1;
        }
        x_step = DRAW_XY_ONE;
        y_step = (dy * DRAW_XY_ONE) / (ax | 1);
        ecount = (b[0] - a[0]) >> DRAW_XY_SHIFT;
    } else {
        if (dy < 0) {
            dx = -dx;
            const long long t0 = a[0], t1 = a[1];
            a[0] = b[0];
            a[1] = b[1];
            b[0] = t0;
            b[1] = t1;
        }
        x_step = (dx * DRAW_XY_ONE) / (ay | 1);
        y_step = DRAW_XY_ONE;
        ecount = (b[1] - a[1]) >> DRAW_XY_SHIFT;
    }
    a[0] += DRAW_HALF;
    a[1] += DRAW_HALF;
    draw_put(c, (b[0] + DRAW_HALF) >> DRAW_XY_SHIFT, (b[1] + DRAW_HALF) >> DRAW_XY_SHIFT);
    if (ax > ay) {
        long long x = a[0] >> DRAW_XY_SHIFT;
        long long y = a[1];
        while (ecount >= 0) {
            draw_put(c, x, y >> DRAW_XY_SHIFT);
            x += 1;
            y += y_step;
            ecount -= 1;
        }
    } else {
        long long x = a[0];
        long long y = a[1] >> DRAW_XY_SHIFT;
        while (ecount >= 0) {
            draw_put(c, x >> DRAW_XY_SHIFT, y);
            x += x_step;
            y += 1;
            ecount -= 1;
        }
    }
}

struct DrawEdge {
    int idx;
    int di;
    long long x;
    long long dx;
    long long ye;
};

// Scan-line fill of a convex quadrilateral in 16.16 fixed point (OpenCV FillConvexPoly,
// shift 16, LINE_8), outline included.
static __device__ void draw_fill_quad(const DrawCanvas& c, const long long v[4][2]) {
    const int n = 4;
    const long long* p0 = v[n - 1];
    long long xmin = v[0][0], xmax = v[0][0], ymin = v[0][1], ymax = v[0][1];
    int imin = 0;
    for (int i = 0; i < n; ++i) {
        const long long* p = v[i];
        if (p[1] < ymin) {
            ymin = p[1];
            imin = i;
        }
        if (p[1] > ymax) {
            ymax = p[1];
        }
        if (p[0] > xmax) {
            xmax = p[0];
        }
        if (p[0] < xmin) {
            xmin = p[0];
        }
        draw_fixed_line(c, p0, p);
        p0 = p;
    }
    xmin = (xmin + DRAW_HALF) >> DRAW_XY_SHIFT;
    xmax = (xmax + DRAW_HALF) >> DRAW_XY_SHIFT;
    ymin = (ymin + DRAW_HALF) >> DRAW_XY_SHIFT;
    ymax = (ymax + DRAW_HALF) >> DRAW_XY_SHIFT;
    if (xmax < 0 || ymax < 0 || xmin >= c.w || ymin >= c.h) {
        return;
    }
    if (ymax > c.h - 1) {
        ymax = c.h - 1;
    }
    DrawEdge edge[2];
    edge[0].idx = imin;
    edge[0].di = 1;
    edge[1].idx = imin;
    edge[1].di = n - 1;
    for (int k = 0; k < 2; ++k) {
        edge[k].x = -DRAW_XY_ONE;
        edge[k].dx = 0;
        edge[k].ye = ymin;
    }
    long long edges = n;
    long long y = ymin;
    for (;;) {
        for (int k = 0; k < 2; ++k) {
            DrawEdge& e = edge[k];
            if (y < e.ye) {
                continue;
            }
            int idx0 = e.idx;
            int idx = idx0 + e.di;
            if (idx >= n) {
                idx -= n;
            }
            for (;;) {
                const bool more = edges > 0;
                edges -= 1;
                if (!more) {
                    break;
                }
                const long long ty = (v[idx][1] + DRAW_HALF) >> DRAW_XY_SHIFT;
                if (ty > y) {
                    const long long xs = v[idx0][0];
                    const long long xe = v[idx][0];
                    e.ye = ty;
                    e.dx = ((xe - xs) * 2 + (ty - y)) / (2 * (ty - y));
                    e.x = xs;
                    e.idx = idx;
                    break;
                }
                idx0 = idx;
                idx += e.di;
                if (idx >= n) {
                    idx -= n;
                }
            }
        }
        if (edges < 0) {
            break;
        }
        if (y >= 0) {
            const int l = edge[0].x > edge[1].x ? 1 : 0;
            const int r = 1 - l;
            const long long x1 = (edge[l].x + DRAW_HALF) >> DRAW_XY_SHIFT;
            const long long x2 = (edge[r].x + DRAW_HALF) >> DRAW_XY_SHIFT;
            if (x2 >= 0 && x1 < c.w) {
                draw_hline(c, y, x1, x2);
            }
        }
        edge[0].x += edge[0].dx;
        edge[1].x += edge[1].dx;
        y += 1;
        if (y > ymax) {
            break;
        }
    }
}

// Filled Bresenham circle (OpenCV Circle with fill).
static __device__ void draw_filled_circle(const DrawCanvas& c, long long cx, long long cy, long long radius) {
    long long err = 0, dx = radius, dy = 0, plus = 1, minus = 2 * radius - 1;
    while (dx >= dy) {
        draw_hline(c, cy - dy, cx - dx, cx + dx);
        draw_hline(c, cy + dy, cx - dx, cx + dx);
        draw_hline(c, cy - dx, cx - dy, cx + dy);
        draw_hline(c, cy + dx, cx - dy, cx + dy);
        dy += 1;
        err += plus;
        plus += 2;
        const long long mask = err <= 0 ? 0 : -1;
        err -= minus & mask;
        dx += mask;
        minus -= mask & 2;
    }
}

// cv::line(img, p0, p1, color, thickness, LINE_8, 0).
static __device__ void draw_line(const DrawCanvas& c, int p0x, int p0y, int p1x, int p1y, int thickness) {
    if (thickness <= 1) {
        draw_thin_line(c, p0x, p0y, p1x, p1y);
        return;
    }
    // Multiplication rather than `<<`: a left shift of a negative value is undefined in C++17.
    const long long a[2] = {(long long)p0x * DRAW_XY_ONE, (long long)p0y * DRAW_XY_ONE};
    const long long b[2] = {(long long)p1x * DRAW_XY_ONE, (long long)p1y * DRAW_XY_ONE};
    const double inv = 1.0 / (double)DRAW_XY_ONE;
    const double dx = (double)(a[0] - b[0]) * inv;
    const double dy = (double)(b[1] - a[1]) * inv;
    const double r2 = dx * dx + dy * dy;
    const long long odd = thickness & 1;
    const long long half = (long long)thickness * (DRAW_XY_ONE >> 1);
    if (fabs(r2) > 2.220446049250313e-16) {  // f64::EPSILON
        const double r = ((double)half + (double)odd * (double)DRAW_XY_ONE * 0.5) / sqrt(r2);
        // cvRound: round half to even.
        const long long ox = (long long)rint(dy * r);
        const long long oy = (long long)rint(dx * r);
        const long long quad[4][2] = {
            {a[0] + ox, a[1] + oy},
            {a[0] - ox, a[1] - oy},
            {b[0] - ox, b[1] - oy},
            {b[0] + ox, b[1] + oy},
        };
        draw_fill_quad(c, quad);
    }
    const long long radius = (half + DRAW_HALF) >> DRAW_XY_SHIFT;
    draw_filled_circle(c, (a[0] + DRAW_HALF) >> DRAW_XY_SHIFT, (a[1] + DRAW_HALF) >> DRAW_XY_SHIFT, radius);
    draw_filled_circle(c, (b[0] + DRAW_HALF) >> DRAW_XY_SHIFT, (b[1] + DRAW_HALF) >> DRAW_XY_SHIFT, radius);
}

// order[i] = 0 for i < n.
extern "C" __global__ void draw_clear(unsigned int* order, unsigned int n) {
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        order[i] = 0;
    }
}

// One thread per segment. `points`: n_points (x, y) int pairs, already truncated toward zero.
// A segment naming a point outside 0..n_points draws nothing.
extern "C" __global__ void draw_segments(const int* points, unsigned int n_points, const Segment* segments,
                                         unsigned int n_segments, unsigned int* order, int width, int height) {
    const unsigned int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_segments || width <= 0 || height <= 0) {
        return;
    }
    const Segment seg = segments[s];
    if (seg.a < 0 || seg.b < 0 || (unsigned int)seg.a >= n_points || (unsigned int)seg.b >= n_points) {
        return;
    }
    DrawCanvas c;
    c.order = order;
    c.w = width;
    c.h = height;
    c.id = s + 1;
    draw_line(c, points[2 * seg.a], points[2 * seg.a + 1], points[2 * seg.b], points[2 * seg.b + 1],
              seg.thickness);
}

// One thread per pixel (2-D grid): RGB of the winning segment, black where none drew.
extern "C" __global__ void draw_colour(const unsigned int* order, const Segment* segments, unsigned int n_segments,
                                       unsigned char* rgb, int width, int height) {
    const unsigned int x = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (width <= 0 || height <= 0 || x >= (unsigned int)width || y >= (unsigned int)height) {
        return;
    }
    const unsigned long long i = (unsigned long long)y * (unsigned long long)width + x;
    const unsigned int o = order[i];
    const unsigned int colour = (o != 0 && o <= n_segments) ? segments[o - 1].rgb : 0u;
    rgb[3 * i] = (unsigned char)(colour >> 16);
    rgb[3 * i + 1] = (unsigned char)(colour >> 8);
    rgb[3 * i + 2] = (unsigned char)colour;
}
