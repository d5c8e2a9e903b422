// shiftsim reference RTL -- ShiftCNN shift unit (SPEC 5.1, "shift unit").
//
// For one input x it makes the S+1 magnitudes the selectors choose from:
//     xs[s] = (x << F) >> s                      TRN (floor: an arithmetic right shift)
//     xs[s] = ((x << F) + 2^(s-1)) >> s, s >= 1  RND (half up)
// s = 0..S with S = 2^(B-1) - 1 + N - 2. The P-1 nonzero values of the paper are +-xs[s]; the
// sign is applied after the shift, in the selector.
//
// Widths (two's complement): XW = XBITS (+1 when x is unsigned), RW = XW + F. Every xs[s]
// fits RW bits: for s >= 1, |(r + 2^(s-1)) >> s| <= |r|.
// The derived parameters (XW, RW) must be left at their defaults.
module shift_unit #(
    parameter integer XBITS   = 8,   // input width
    parameter integer XSIGNED = 0,   // 1: x is two's complement, 0: unsigned
    parameter integer F       = 0,   // extra LSBs kept by the shift unit
    parameter integer RND     = 0,   // 0: TRN, 1: RND
    parameter integer S       = 8,   // largest shift
    parameter integer XW      = XBITS + (XSIGNED ? 0 : 1),
    parameter integer RW      = XW + F
) (
    input  wire [XBITS-1:0]      x,
    output wire [(S+1)*RW-1:0]   xs   // xs[s] in bits [s*RW +: RW]
);
    wire signed [XW-1:0] xe;
    generate
        if (XSIGNED) begin : g_signed
            assign xe = x;
        end else begin : g_unsigned
            assign xe = {1'b0, x};
        end
    endgenerate

    wire signed [RW-1:0] r = xe <<< F;  // x << F: F fractional bits appended

    genvar s;
    generate
        for (s = 0; s <= S; s = s + 1) begin : g_shift
            if (RND != 0 && s >= 1 && s - 1 < RW) begin : g_rnd
                // ((x << F) + 2^(s-1)) >>> s, computed two bits wider
                wire signed [RW+1:0] rr   = r;
                wire        [RW+1:0] half = {{(RW+1){1'b0}}, 1'b1} << (s - 1);
                wire signed [RW+1:0] sum  = rr + $signed(half);
                wire signed [RW+1:0] q    = sum >>> s;
                assign xs[s*RW +: RW] = q[RW-1:0];
            end else if (RND != 0 && s >= 1) begin : g_rnd_zero
                // 2^(s-1) exceeds |x << F|: the rounded quotient is 0 for every input
                assign xs[s*RW +: RW] = {RW{1'b0}};
            end else begin : g_trn
                assign xs[s*RW +: RW] = r >>> s;  // floor(r / 2^s), sign-filled for s >= RW
            end
        end
    endgenerate
endmodule
