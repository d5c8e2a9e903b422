// shiftsim reference RTL -- a ShiftCNN accumulation unit with its inputs' shift units: the
// top that the shift-add vectors drive (fields x, idx, n, first, bias; term, tree, acc, ovf).
// In the paper's array one shift unit per input is shared (multicast) by all A units; here
// each lane has its own, so one unit can be tested alone. xs0 exposes lane 0's shift-unit
// words (the vectors' shift_unit table).
module shiftcnn_lane #(
    parameter integer XBITS    = 8,
    parameter integer XSIGNED  = 0,
    parameter integer F        = 0,
    parameter integer RND      = 0,
    parameter integer B        = 4,
    parameter integer N        = 2,
    parameter integer T        = 4,
    parameter integer ACC_BITS = 32,
    parameter integer SAT      = 0,
    // derived: leave at their defaults
    parameter integer XW       = XBITS + (XSIGNED ? 0 : 1),
    parameter integer RW       = XW + F,
    parameter integer TW       = RW + 1,
    parameter integer TREEW    = TW + $clog2(T),
    parameter integer S        = (1 << (B - 1)) - 1 + N - 2,
    parameter integer NBITS    = $clog2(N + 1)
) (
    input  wire                clk,
    input  wire                en,
    input  wire                first,
    input  wire [ACC_BITS-1:0] bias,
    input  wire [NBITS-1:0]    n,
    input  wire [T*XBITS-1:0]  x,
    input  wire [T*B-1:0]      idx,
    output wire [T*TW-1:0]     term,
    output wire [TREEW-1:0]    tree,
    output wire [ACC_BITS-1:0] acc,
    output wire                ovf,
    output wire                ovf_any,
    output wire [(S+1)*RW-1:0] xs0
);
    wire [T*(S+1)*RW-1:0] xs;
    genvar i;
    generate
        for (i = 0; i < T; i = i + 1) begin : g_shift
            shift_unit #(.XBITS(XBITS), .XSIGNED(XSIGNED), .F(F), .RND(RND), .S(S)) u_shift (
                .x(x[i*XBITS +: XBITS]), .xs(xs[i*(S+1)*RW +: (S+1)*RW]));
        end
    endgenerate
    assign xs0 = xs[(S+1)*RW-1:0];

    shiftcnn_unit #(.XBITS(XBITS), .XSIGNED(XSIGNED), .F(F), .B(B), .N(N), .T(T),
                    .ACC_BITS(ACC_BITS), .SAT(SAT)) u_unit (
        .clk(clk), .en(en), .first(first), .bias(bias), .n(n), .xs(xs), .idx(idx),
        .term(term), .tree(tree), .acc(acc), .ovf(ovf), .ovf_any(ovf_any));
endmodule
