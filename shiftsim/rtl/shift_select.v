// shiftsim reference RTL -- ShiftCNN selector: a P-1 : 1 multiplexer with sign (SPEC 5.1).
//
//     term = sign(j) * xs[|j| + n - 2]   for j != 0,   term = 0 for j == 0
//
// j is the signed B-bit weight index of codebook n (1..N), |j| <= 2^(B-1) - 1.
// TW = RW + 1: negating the most negative xs needs one more bit.
module shift_select #(
    parameter integer B     = 4,
    parameter integer N     = 2,
    parameter integer RW    = 9,
    parameter integer S     = 8,
    parameter integer NBITS = 2,
    parameter integer TW    = RW + 1
) (
    input  wire [(S+1)*RW-1:0] xs,
    input  wire [B-1:0]        j,
    input  wire [NBITS-1:0]    n,
    output wire [TW-1:0]       term
);
    localparam integer SELW = $clog2(S + 2) + 1;            // holds |j| + n - 2 in 0..S
    wire signed [B-1:0]    js    = j;
    wire        [B-1:0]    mag_j = js[B-1] ? -js : js;
    wire        [SELW-1:0] sel   = mag_j + n - 2;          // which shift: |j| + n - 2
    reg  signed [RW-1:0]   word;                           // the multicast word xs[sel]
    integer s;
    always @* begin                                        // an (S+1) : 1 multiplexer
        word = {RW{1'b0}};
        for (s = 0; s <= S; s = s + 1)
            if (sel == s) word = xs[s*RW +: RW];
    end
    wire signed [TW-1:0] wext  = word;                     // sign-extended
    assign term = (js == 0) ? {TW{1'b0}} : (js[B-1] ? -wext : wext);
endmodule
