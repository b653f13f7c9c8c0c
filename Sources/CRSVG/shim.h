// librsvg renders the evaluation's SVG plots to PNG through cairo, so both come from one drawing.
#include <librsvg/rsvg.h>
#include <cairo.h>
