import CRSVG
import Foundation

/// Renders the evaluation's SVG plots to PNG with librsvg and cairo, so a plot reads at a glance
/// where SVG is not shown (a terminal image viewer, a chat, an issue), and both files come from
/// one drawing.
public enum PNGRender {
    public struct RenderError: Error, CustomStringConvertible {
        public var description: String
    }

    /// Writes `svg` as a PNG at `path`, `scale` times its own size.
    public static func write(svg: String, to path: String, scale: Double = 1.5) throws {
        let bytes = Array(svg.utf8)
        var error: UnsafeMutablePointer<GError>?
        guard let handle = bytes.withUnsafeBufferPointer({ rsvg_handle_new_from_data($0.baseAddress, gsize($0.count), &error) }) else {
            defer { g_error_free(error) }
            throw RenderError(description: "librsvg could not read the plot: \(error.map { String(cString: $0.pointee.message) } ?? "unknown error")")
        }
        defer { g_object_unref(UnsafeMutableRawPointer(handle)) }
        var width = 0.0
        var height = 0.0
        guard rsvg_handle_get_intrinsic_size_in_pixels(handle, &width, &height) != 0, width > 0, height > 0 else {
            throw RenderError(description: "the plot has no width and height in pixels")
        }
        let surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, Int32(width * scale), Int32(height * scale))
        defer { cairo_surface_destroy(surface) }
        let context = cairo_create(surface)
        defer { cairo_destroy(context) }
        var viewport = RsvgRectangle(x: 0, y: 0, width: width * scale, height: height * scale)
        guard rsvg_handle_render_document(handle, context, &viewport, &error) != 0 else {
            defer { g_error_free(error) }
            throw RenderError(description: "librsvg could not draw the plot: \(error.map { String(cString: $0.pointee.message) } ?? "unknown error")")
        }
        let status = cairo_surface_write_to_png(surface, path)
        guard status == CAIRO_STATUS_SUCCESS else {
            throw RenderError(description: "\(path): \(String(cString: cairo_status_to_string(status)))")
        }
    }
}
